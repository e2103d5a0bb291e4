package bench

import (
	"bytes"
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pandachat/pandachat/internal/chattest"
)

// serverBin is the pandachat binary built once for the tests that run the
// generator against the real server (with -race when the tests run with it);
// buildErr says why there is none.
var serverBin, buildErr string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pandachat-bench-test-")
	if err != nil {
		panic(err)
	}
	bin := filepath.Join(dir, "pandachat")
	if out, err := exec.Command("go", append(append([]string{"build"}, chattest.BuildFlags()...), "-o", bin, "../cmd/pandachat")...).CombinedOutput(); err != nil {
		buildErr = "go build ./cmd/pandachat failed: " + strings.SplitN(strings.TrimSpace(string(out)), "\n", 2)[0]
	} else {
		serverBin = bin
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func TestMainHelpListsEveryFlag(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main(context.Background(), []string{"--help"}, &out, &errb); code != 0 {
		t.Fatalf("--help exit code %d", code)
	}
	fs, _ := newFlagSet(&bytes.Buffer{})
	fs.VisitAll(func(f *flag.Flag) {
		if !strings.Contains(errb.String(), "-"+f.Name+" ") && !strings.Contains(errb.String(), "-"+f.Name+"\n") {
			t.Errorf("--help does not list -%s", f.Name)
		}
	})
	if !strings.Contains(errb.String(), "(default 1000)") {
		t.Error("--help does not show defaults")
	}
}

func TestMainBadInput(t *testing.T) {
	for _, args := range [][]string{{"--no-such-flag"}, {"extra"}, {"--steps", "1,x"}, {"--suite", "--rounds", "-1"}, {"baseline", "--mode", "bogus", "--addr", "127.0.0.1:0"}} {
		var out, errb bytes.Buffer
		if code := Main(context.Background(), args, &out, &errb); code == 0 {
			t.Errorf("%v: exit code 0, want non-zero", args)
		}
		if errb.Len() == 0 {
			t.Errorf("%v: nothing on stderr", args)
		}
	}
}

func TestMainAgainstRunningServer(t *testing.T) {
	b, err := StartBaseline(BaselineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var out, errb bytes.Buffer
	code := Main(context.Background(), []string{"--server", b.URL, "--pid", "0", "--conns", "10", "--rooms", "2", "--senders", "2",
		"--steps", "50,100", "--duration", "200ms", "--json"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{`"deliveryRatio": 1,`, `"conns": 10,`, `"p99":`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("JSON lacks %s:\n%s", want, out.String())
		}
	}
}

func TestGeneratorAgainstServer(t *testing.T) {
	if serverBin == "" {
		t.Fatal(buildErr)
	}
	ctx := context.Background()
	c, err := StartCommand(ctx, serverBin, "serve", "--addr", "127.0.0.1:0", "--data", t.TempDir(),
		"--dev-login=true", "--rate-limit", "off")
	if err != nil {
		t.Fatalf("pandachat serve did not start: %v", err)
	}
	defer func() {
		if err := c.Stop(); err != nil {
			t.Errorf("server stop: %v", err)
		}
	}()
	g, err := Open(ctx, Options{Server: c.URL, Conns: 20, Users: 5, SrcIPs: 2, PID: c.PID()})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if g.Setup.Conns != 20 {
		t.Fatalf("ready connections = %d, want 20 (%s)", g.Setup.Conns, g.Setup.FirstError)
	}
	r := g.Step(ctx, StepOptions{Senders: 4, Rate: 200, Duration: 300 * time.Millisecond, Drain: 5 * time.Second})
	if r.Sent == 0 || r.DeliveryRatio != 1 || !r.Lossless() {
		t.Fatalf("sent %d, ratio %.4f, gaps %d dups %d out-of-order %d closed %d (%s): want every message delivered once, in order",
			r.Sent, r.DeliveryRatio, r.Gaps, r.Dups, r.OutOfOrder, r.Closed, r.CloseReasons)
	}
	if r.ServerRSS == 0 {
		t.Error("no server RSS read from /proc")
	}
}
