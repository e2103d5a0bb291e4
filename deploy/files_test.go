package deploy_test

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDockerfileBuildsAStaticBinary runs the Dockerfile's own go build command
// (no Docker engine needed) and checks that the result is static and runs.
func TestDockerfileBuildsAStaticBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	df, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(df), "\\\n", " ")
	for _, want := range []string{
		"ENV PANDA_ADDR=0.0.0.0:8765", "PANDA_DATA=/data", `VOLUME ["/data"]`, "EXPOSE 8765",
		`CMD ["/pandachat", "healthcheck"]`, "USER 65532:65532",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	m := regexp.MustCompile(`RUN (CGO_ENABLED=0 GOOS=linux go build [^&\n]+)`).FindStringSubmatch(text)
	if m == nil {
		t.Fatal("no CGO_ENABLED=0 go build line in the Dockerfile")
	}
	out := t.TempDir()
	line := strings.ReplaceAll(m[1], "${VERSION}", "test")
	line = strings.ReplaceAll(line, "/out/", out+"/")
	fields := strings.Fields(line)
	var env, args []string
	for len(fields) > 0 && strings.Contains(fields[0], "=") {
		env, fields = append(env, fields[0]), fields[1:]
	}
	for i := 2; i < len(fields); i++ { // after "go build"; the quoted -ldflags value is one argument
		f := fields[i]
		if strings.HasPrefix(f, `"`) {
			for !strings.HasSuffix(f, `"`) || f == `"` {
				i++
				f += " " + fields[i]
			}
			f = strings.Trim(f, `"`)
		}
		args = append(args, f)
	}
	cmd := exec.Command("go", append([]string{"build"}, args...)...)
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, b)
	}
	bin := filepath.Join(out, "pandachat")
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("binary has an ELF interpreter: it is dynamically linked and will not run on distroless/static")
		}
	}
	if b, err := exec.Command(bin, "version").Output(); err != nil || strings.TrimSpace(string(b)) != "pandachat test" {
		t.Fatalf("version: %q %v", b, err)
	}
}

// TestSystemdUnitVerifies runs systemd-analyze on the unit, with ExecStart
// pointed at a file that exists here.
func TestSystemdUnitVerifies(t *testing.T) {
	unit, err := os.ReadFile("pandachat.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"NoNewPrivileges=yes", "PrivateTmp=yes", "ProtectSystem=strict", "StateDirectory=pandachat",
		"DynamicUser=yes", "ReadWritePaths=/var/lib/pandachat", "LimitNOFILE=", "EnvironmentFile=",
		"PANDA_DATA=/var/lib/pandachat",
	} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("unit lacks %s", want)
		}
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("systemd-analyze is missing: CI must install the systemd package")
		}
		t.Skip("systemd-analyze not installed (apt-get install systemd); skipping the unit check")
	}
	self, _ := os.Executable()
	u := strings.ReplaceAll(string(unit), "/usr/local/bin/pandachat", self)
	p := filepath.Join(t.TempDir(), "pandachat.service")
	os.WriteFile(p, []byte(u), 0o644)
	if b, err := exec.Command(analyze, "verify", p).CombinedOutput(); err != nil || len(strings.TrimSpace(string(b))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, b)
	}
}
