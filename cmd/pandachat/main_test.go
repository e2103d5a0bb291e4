package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lxzan/gws"

	"github.com/pandachat/pandachat/internal/chattest"
)

var binary string // built once by TestMain

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pandachat-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "pandachat")
	if out, err := exec.Command("go", append(append([]string{"build"}, chattest.BuildFlags()...), "-o", binary, ".")...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is the server binary running as a child process.
type proc struct {
	cmd    *exec.Cmd
	url    string
	stderr *bytes.Buffer
	mu     *sync.Mutex
	exited chan error
}

var listening = regexp.MustCompile(`listening on (http://\S+)`)

func startBinary(t *testing.T, args ...string) *proc {
	t.Helper()
	p, urls := spawn(t, exec.Command(binary, args...))
	select {
	case p.url = <-urls:
	case err := <-p.exited:
		t.Fatalf("server exited before listening: %v\n%s", err, p.log())
	case <-time.After(30 * time.Second):
		t.Fatalf("server did not start:\n%s", p.log())
	}
	return p
}

// spawn starts cmd, keeps its stderr and sends the URL of its listening line;
// the process is killed when the test ends.
func spawn(t *testing.T, cmd *exec.Cmd) (*proc, <-chan string) {
	t.Helper()
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	p := &proc{cmd: cmd, stderr: &bytes.Buffer{}, mu: &sync.Mutex{}, exited: make(chan error, 1)}
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			p.mu.Lock()
			p.stderr.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			if m := listening.FindStringSubmatch(sc.Text()); m != nil {
				urls <- m[1]
			}
		}
		p.exited <- cmd.Wait()
	}()
	return p, urls
}

func (p *proc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

func (p *proc) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-p.exited:
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("server did not exit:\n%s", p.log())
		return nil
	}
}

// Messages any client saw survive kill -9; ids go on after the highest stored
// one; sessions stay valid.
func TestCrashDurability(t *testing.T) {
	data := t.TempDir()
	args := []string{"serve", "--addr", "127.0.0.1:0", "--data", data, "--dev-login=true", "--rate-limit", "off"}
	p := startBinary(t, args...)
	env := chattest.Remote(t, p.url)
	const n = 3
	var sessions []chattest.Session
	var clients []*chattest.Client
	for i := 0; i < n; i++ {
		s := env.DevLogin(fmt.Sprintf("c%d", i))
		c := env.Dial(s, "room=crash")
		c.NextOfType("system")
		sessions, clients = append(sessions, s), append(clients, c)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				if c.Conn.WriteMessage(gws.OpcodeText, fmt.Appendf(nil, `{"text":true,"content":"c%d-%d"}`, i, j)) != nil {
					return
				}
				time.Sleep(200 * time.Microsecond)
			}
		}()
	}
	// Let traffic flow, then kill the process in the middle of it.
	seen := map[uint64]string{}
	deadline := time.Now().Add(chattest.Wait)
	for len(seen) < 500 && time.Now().Before(deadline) {
		m := clients[0].NextChat()
		seen[m.ID] = m.Content
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.wait(t)
	close(stop)
	wg.Wait()
	for _, c := range clients { // everything that reached any client before the kill
		for c.Pending() > 0 {
			m := c.NextChat()
			if m.ID != 0 {
				if prev, ok := seen[m.ID]; ok && prev != m.Content {
					t.Fatalf("id %d seen as %q and %q", m.ID, prev, m.Content)
				}
				seen[m.ID] = m.Content
			}
		}
	}
	var maxSeen uint64
	for id := range seen {
		maxSeen = max(maxSeen, id)
	}

	p2 := startBinary(t, args...)
	env2 := chattest.Remote(t, p2.url)
	stored := map[uint64]string{}
	var top uint64
	before := ""
	for {
		var page []chattest.Chat
		if st := env2.Do(sessions[1], "GET", "/history?room=crash&limit=100"+before, nil, &page); st != 200 {
			t.Fatalf("history after restart: HTTP %d (session lost?)", st)
		}
		if len(page) == 0 {
			break
		}
		for _, m := range page {
			stored[m.ID] = m.Content
			top = max(top, m.ID)
		}
		before = fmt.Sprintf("&before=%d", page[0].ID)
	}
	for id, content := range seen {
		if stored[id] != content {
			t.Errorf("message %d (%q) was delivered before the crash but is not in the history", id, content)
		}
	}
	if top < maxSeen {
		t.Fatalf("history ends at %d, clients saw %d", top, maxSeen)
	}
	t.Logf("%d messages seen by clients, %d stored, last id %d", len(seen), len(stored), top)
	c := env2.Dial(sessions[2], "room=crash")
	c.NextOfType("system")
	c.Send(map[string]any{"text": true, "content": "after the crash"})
	if m := c.NextChat(); m.ID != top+1 {
		t.Errorf("first id after restart = %d, want %d", m.ID, top+1)
	}
}

func TestGracefulShutdown(t *testing.T) {
	data := t.TempDir()
	args := []string{"serve", "--addr", "127.0.0.1:0", "--data", data, "--dev-login=true"}
	p := startBinary(t, args...)
	env := chattest.Remote(t, p.url)
	s := env.DevLogin("last")
	c := env.Dial(s, "")
	c.NextOfType("system")
	c.Send(map[string]any{"text": true, "content": "before shutdown"})
	c.NextChat()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := c.Closed(); code != 1001 {
		t.Errorf("close code %d, want 1001", code)
	}
	if err := p.wait(t); err != nil {
		t.Errorf("exit: %v\n%s", err, p.log())
	}
	if !strings.Contains(p.log(), "stopped cleanly") {
		t.Errorf("no clean stop line:\n%s", p.log())
	}
	p2 := startBinary(t, args...)
	var page []chattest.Chat
	chattest.Remote(t, p2.url).Do(s, "GET", "/history", nil, &page)
	if len(page) != 1 || page[0].Content != "before shutdown" {
		t.Errorf("history after restart: %v", page)
	}
}

func TestCommandLine(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, []byte("x"), 0o600)
	rows := []struct {
		name string
		args []string
		env  map[string]string
		code int
		out  string // in stdout+stderr
	}{
		{"version", []string{"version"}, nil, 0, "pandachat "},
		{"help", []string{"serve", "--help"}, nil, 0, "PANDA_RATE_LIMIT"},
		{"unknown command", []string{"fly"}, nil, 2, `unknown command "fly"`},
		{"unknown flag", []string{"serve", "--nope"}, nil, 2, "flag provided but not defined: -nope"},
		{"bad rate", []string{"serve", "--rate-limit", "fast"}, nil, 2, `invalid value "fast" for flag -rate-limit`},
		{"bad rate from env", []string{"serve"}, map[string]string{"PANDA_RATE_LIMIT": "x/y"}, 2, "$PANDA_RATE_LIMIT"},
		{"bad dev-login", []string{"serve", "--dev-login", "maybe"}, nil, 2, "--dev-login"},
		{"bad outbox", []string{"serve", "--outbox", "0"}, nil, 2, "--outbox"},
		{"grace zero", []string{"serve", "--grace", "0"}, nil, 2, "--grace must be positive"},
		{"negative grace from env", []string{"serve"}, map[string]string{"PANDA_GRACE": "-1s"}, 2, "--grace must be positive"},
		{"appid without secret", []string{"serve", "--wx-appid", "wx1", "--data", t.TempDir()}, nil, 1, "--wx-appid and --wx-secret go together"},
		{"data dir is a file", []string{"serve", "--data", file, "--addr", "127.0.0.1:0"}, nil, 1, "data directory"},
		{"address in use", []string{"serve", "--addr", "256.0.0.1:1", "--data", t.TempDir()}, nil, 1, "listen on"},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			cmd := exec.Command(binary, r.args...)
			cmd.Env = os.Environ()
			for k, v := range r.env {
				cmd.Env = append(cmd.Env, k+"="+v)
			}
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
			if code != r.code || !strings.Contains(out.String(), r.out) {
				t.Errorf("exit %d, want %d; output:\n%s\nwant it to contain %q", code, r.code, out.String(), r.out)
			}
			if r.code != 0 && strings.Count(strings.TrimSpace(out.String()), "\n") > 1 {
				t.Errorf("an error should be one clear line, got:\n%s", out.String())
			}
		})
	}
}

// Flags win over the environment, which wins over defaults.
func TestFlagPriority(t *testing.T) {
	env := map[string]string{"PANDA_ADDR": "127.0.0.1:9999", "PANDA_OUTBOX": "7", "PANDA_SYNC": "true", "WX_APPID": "wxA", "WX_SECRET": "s"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	cfg, _, err := parseServe([]string{"--outbox", "9"}, lookup, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != "127.0.0.1:9999" || cfg.Outbox != 9 || !cfg.Sync || cfg.WXAppID != "wxA" || cfg.DevLogin {
		t.Errorf("cfg = addr %s outbox %d sync %v appid %s devlogin %v", cfg.Addr, cfg.Outbox, cfg.Sync, cfg.WXAppID, cfg.DevLogin)
	}
	cfg, _, _ = parseServe(nil, func(string) (string, bool) { return "", false }, io.Discard, io.Discard)
	if cfg.Addr != "127.0.0.1:8765" || cfg.DataDir != "./data" || !cfg.DevLogin || cfg.Rate.String() != "20/10s" {
		t.Errorf("defaults: addr %s data %s devlogin %v rate %s", cfg.Addr, cfg.DataDir, cfg.DevLogin, cfg.Rate)
	}
	_ = context.Background
}
