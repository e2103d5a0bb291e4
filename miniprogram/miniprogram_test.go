// Package miniprogram holds the WeChat mini-program client; this Go test runs
// its Node test suite (unit tests and the integration test against the real
// server) so that `go test ./...` covers it.
package miniprogram

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/pandachat/pandachat/internal/chattest"
)

func TestNodeSuite(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the Node suite builds and starts the server")
	}
	npm, err := exec.LookPath("npm")
	if _, nerr := exec.LookPath("node"); err != nil || nerr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("node and npm are required in CI")
		}
		t.Skip("node/npm not installed: the mini-program suite needs Node.js 20+")
	}
	if _, err := os.Stat("node_modules/ws"); err != nil {
		install := exec.Command(npm, "ci", "--no-audit", "--no-fund")
		if out, err := install.CombinedOutput(); err != nil {
			t.Fatalf("npm ci: %v\n%s", err, out)
		}
	}
	// The integration test runs this server binary: built here, with -race
	// when this test runs with the race detector.
	bin := filepath.Join(t.TempDir(), "pandachat")
	build := exec.Command("go", append(append([]string{"build"}, chattest.BuildFlags()...), "-o", bin, "../cmd/pandachat")...)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", build, err, out)
	}
	cmd := exec.Command(npm, "test")
	cmd.Env = append(os.Environ(), "PANDACHAT_BIN="+bin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("npm test: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
