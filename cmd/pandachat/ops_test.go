package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pandachat/pandachat/internal/chattest"
	"github.com/pandachat/pandachat/persistence"
	"github.com/pandachat/pandachat/server"
)

// cliServer is "pandachat serve" running in this process, as an operator starts it.
type cliServer struct {
	url    string
	log    *chattest.SyncBuffer
	cancel context.CancelFunc
	code   chan int
}

func startCLI(t *testing.T, args ...string) *cliServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &cliServer{log: &chattest.SyncBuffer{}, cancel: cancel, code: make(chan int, 1)}
	args = append([]string{"serve", "--addr", "127.0.0.1:0"}, args...)
	go func() { c.code <- run(ctx, args, c.log, c.log) }()
	deadline := time.Now().Add(chattest.Wait)
	for c.url == "" {
		for _, line := range strings.Split(c.log.String(), "\n") {
			if _, u, ok := strings.Cut(line, ": listening on "); ok {
				c.url = strings.TrimSpace(u)
			}
		}
		select {
		case code := <-c.code:
			t.Fatalf("serve exited with %d:\n%s", code, c.log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start:\n%s", c.log)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Cleanup(func() { c.stop(t) })
	return c
}

// stop sends the server the equivalent of SIGTERM and waits for its exit code.
func (c *cliServer) stop(t *testing.T) int {
	t.Helper()
	c.cancel()
	select {
	case code := <-c.code:
		c.code <- code // stop may be called again by the cleanup
		return code
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not stop:\n%s", c.log)
		return -1
	}
}

// chat has a say "hello" to b through the server and checks both see it.
func chat(t *testing.T, env *chattest.Env, room string) {
	t.Helper()
	alice, bob := env.DevLogin("alice"), env.DevLogin("bob")
	a, b := env.Dial(alice, "room="+room), env.Dial(bob, "room="+room)
	a.NextOfType("system")
	b.NextOfType("system")
	a.Send(map[string]any{"text": true, "content": "hello over " + room})
	if f := b.NextOfType("remote"); f["content"] != "hello over "+room || f["nickName"] != "alice" {
		t.Fatalf("bob got %v", f)
	}
	if f := a.NextOfType("user"); f["content"] != "hello over "+room {
		t.Fatalf("alice got %v", f)
	}
}

// upload posts a picture and returns its media URL.
func upload(t *testing.T, env *chattest.Env, s chattest.Session, img []byte) string {
	t.Helper()
	code, ans := env.Upload(s, "a.png", img)
	u, _ := ans["url"].(string)
	if code != 200 || u == "" {
		t.Fatalf("upload: HTTP %d %v", code, ans)
	}
	return u
}

func TestDirectTLS(t *testing.T) {
	cert, key, pool := chattest.SelfSigned(t, t.TempDir())
	srv := startCLI(t, "--data", t.TempDir(), "--dev-login=true", "--tls-cert", cert, "--tls-key", key)
	if !strings.HasPrefix(srv.url, "https://") {
		t.Fatalf("server URL %s, want https", srv.url)
	}
	env := chattest.RemoteTLS(t, srv.url, pool)
	chat(t, env, "tls")
	u := upload(t, env, env.DevLogin("carol"), chattest.PNG(4, 3))
	if !strings.HasPrefix(u, srv.url+"/media/") {
		t.Fatalf("media URL %s, want it under %s", u, srv.url)
	}
	// Plain HTTP on the TLS port is refused.
	if resp, err := http.Get("http" + strings.TrimPrefix(srv.url, "https") + "/healthz"); err == nil {
		if resp.StatusCode == 200 {
			t.Fatal("plain http answered 200 on the TLS port")
		}
		resp.Body.Close()
	}
	var stderr bytes.Buffer
	if code := run(context.Background(), []string{"healthcheck", "--url", srv.url + "/healthz"}, io.Discard, &stderr); code != 0 {
		t.Fatalf("healthcheck over TLS: exit %d: %s", code, stderr.String())
	}
}

func TestLogsOneLinePerConnectionWithoutSecrets(t *testing.T) {
	const secret = "app-secret-never-logged-0123456789"
	srv := startCLI(t, "--data", t.TempDir(), "--dev-login=true", "--log-format=json",
		"--wx-appid", "wx0123456789", "--wx-secret", secret, "--wx-api", "http://127.0.0.1:1")
	env := chattest.Remote(t, srv.url)
	s := env.DevLogin("dora")
	c := env.Dial(s, "room=logs")
	c.NextOfType("system")
	c.Send(map[string]any{"text": true, "content": "hi"})
	c.NextOfType("user")
	// A refused login must not log what it was given either.
	env.Do(chattest.Session{ID: s.ID, Skey: "wrong-skey-0123456789"}, "GET", "/login", nil, nil)
	c.Conn.WriteClose(1000, []byte("bye"))
	if code := srv.stop(t); code != 0 {
		t.Fatalf("serve exit %d", code)
	}

	var opened, closed []map[string]any
	for _, line := range strings.Split(srv.log.String(), "\n") {
		if !strings.HasPrefix(line, "{") {
			continue // the start-up lines are plain text on purpose
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %s", line)
		}
		switch rec["msg"] {
		case "connection opened":
			opened = append(opened, rec)
		case "connection closed":
			closed = append(closed, rec)
		}
	}
	if len(opened) != 1 || len(closed) != 1 {
		t.Fatalf("%d open and %d close lines, want one each:\n%s", len(opened), len(closed), srv.log)
	}
	for _, key := range []string{"uid", "room", "remote"} {
		if opened[0][key] == nil || opened[0][key] == "" {
			t.Errorf("open line has no %s: %v", key, opened[0])
		}
	}
	if r, _ := closed[0]["reason"].(string); r == "" {
		t.Errorf("close line has no reason: %v", closed[0])
	}
	for name, v := range map[string]string{"session id": s.ID, "skey": s.Skey, "app secret": secret, "wrong skey": "wrong-skey-0123456789"} {
		if strings.Contains(srv.log.String(), v) {
			t.Errorf("the log contains the %s", name)
		}
	}
}

func TestReadyzFailsWhileDraining(t *testing.T) {
	env := chattest.Start(t, server.Config{DevLogin: true})
	resp, err := http.Get(env.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/readyz before shutdown: HTTP %d", resp.StatusCode)
	}
	// The listener closes as shutdown starts, so ask the handler itself, as a
	// request already in flight would.
	if err := env.Stop(); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	env.Srv.Edge().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "draining") {
		t.Fatalf("/readyz while draining: HTTP %d %s", rec.Code, rec.Body)
	}
}

func TestHealthcheck(t *testing.T) {
	env := chattest.Start(t, server.Config{})
	for _, tc := range []struct {
		url  string
		want int
	}{
		{env.URL + "/healthz", 0},
		{env.URL + "/no-such-page-for-health", 1},
		{"http://127.0.0.1:1/healthz", 1},
	} {
		var stderr bytes.Buffer
		if code := run(context.Background(), []string{"healthcheck", "--url", tc.url}, io.Discard, &stderr); code != tc.want {
			t.Errorf("healthcheck %s: exit %d, want %d (%s)", tc.url, code, tc.want, stderr.String())
		}
	}
}

func TestHealthcheckFindsTheServerFromItsEnvironment(t *testing.T) {
	defer func(old func(string) (string, bool)) { lookupEnv = old }(lookupEnv)
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{nil, "http://127.0.0.1:8765"},
		{map[string]string{"PANDA_ADDR": "0.0.0.0:9000"}, "http://127.0.0.1:9000"},
		{map[string]string{"PANDA_ADDR": "[::]:9000"}, "http://127.0.0.1:9000"},
		{map[string]string{"PANDA_ADDR": ":9000"}, "http://127.0.0.1:9000"},
		{map[string]string{"PANDA_ADDR": "10.1.2.3:80", "PANDA_TLS_CERT": "/c.pem"}, "https://10.1.2.3:80"},
	} {
		lookupEnv = func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }
		if got := localURL(); got != tc.want {
			t.Errorf("env %v: %s, want %s", tc.env, got, tc.want)
		}
	}
}

// TestBackupRestoreRoundTrip backs up a running server through its admin
// socket, restores into a new directory and starts a server there.
func TestBackupRestoreRoundTrip(t *testing.T) {
	dataA := t.TempDir()
	os.WriteFile(filepath.Join(dataA, adminSocket), nil, 0o600) // left by a killed server: replaced
	srv := startCLI(t, "--data", dataA, "--dev-login=true")
	remote := chattest.Remote(t, srv.url)
	alice := remote.DevLogin("alice")
	img := chattest.PNG(4, 3)
	mediaURL := upload(t, remote, alice, img)
	c := remote.Dial(alice, "room=saved")
	c.NextOfType("system")
	for i := range 3 {
		c.Send(map[string]any{"text": true, "content": fmt.Sprint("message ", i+1)})
		c.NextOfType("user")
	}
	c.Send(map[string]any{"gallery": true, "url": mediaURL})
	c.NextOfType("user")

	if fi, err := os.Stat(filepath.Join(dataA, adminSocket)); err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket: %v %v, want a socket with mode 0600", fi, err)
	}
	archive := filepath.Join(t.TempDir(), "pandachat.tar")
	var out bytes.Buffer
	if code := run(context.Background(), []string{"backup", "--data", dataA, "--out", archive}, io.Discard, &out); code != 0 {
		t.Fatalf("online backup: exit %d: %s", code, out.String())
	}
	if !strings.Contains(out.String(), "online") {
		t.Errorf("backup of a running server was not taken online: %s", out.String())
	}
	if fi, err := os.Stat(archive); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("archive: %v %v, want mode 0600", fi, err)
	}
	// The server keeps serving while and after the backup runs.
	c.Send(map[string]any{"text": true, "content": "after the backup"})
	c.NextOfType("user")
	if code := srv.stop(t); code != 0 {
		t.Fatalf("serve exit %d:\n%s", code, srv.log)
	}
	if _, err := os.Stat(filepath.Join(dataA, adminSocket)); !os.IsNotExist(err) {
		t.Errorf("admin socket left after a clean stop: %v", err)
	}

	// Restore refuses a directory with data in it and leaves it alone.
	out.Reset()
	if code := run(context.Background(), []string{"restore", "--in", archive, "--data", dataA}, io.Discard, &out); code != 1 || !strings.Contains(out.String(), "not empty") {
		t.Fatalf("restore into a used directory: exit %d: %s", code, out.String())
	}
	dataB := filepath.Join(t.TempDir(), "restored")
	out.Reset()
	if code := run(context.Background(), []string{"restore", "--in", archive, "--data", dataB}, io.Discard, &out); code != 0 {
		t.Fatalf("restore: exit %d: %s", code, out.String())
	}

	env := chattest.Start(t, server.Config{DataDir: dataB, DevLogin: true})
	var me map[string]any
	if code := env.Do(alice, "GET", "/me", nil, &me); code != 200 || me["nickName"] != "alice" {
		t.Fatalf("session after restore: HTTP %d %v", code, me)
	}
	r := env.Dial(alice, "room=saved&since=0")
	r.NextOfType("system")
	for i := range 3 {
		if m := r.NextChat(); m.ID != uint64(i+1) || m.Content != fmt.Sprint("message ", i+1) {
			t.Fatalf("replayed %v, want message %d", m, i+1)
		}
	}
	gallery := r.NextChat()
	if gallery.ID != 4 || !gallery.Gallery {
		t.Fatalf("replayed %v, want the image as message 4", gallery)
	}
	r.Quiet(200 * time.Millisecond) // "after the backup" was not in it
	r.Send(map[string]any{"text": true, "content": "on the restored server"})
	if m := r.NextChat(); m.ID != 5 {
		t.Fatalf("new message got id %d, want 5", m.ID)
	}
	_, path, _ := strings.Cut(strings.TrimPrefix(mediaURL, "http://"), "/")
	resp, err := http.Get(env.URL + "/" + path)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(got, img) {
		t.Fatalf("media after restore: HTTP %d, %d bytes (want %d)", resp.StatusCode, len(got), len(img))
	}
	env.Stop()

	// With the server stopped, the same command backs up offline.
	offline := filepath.Join(t.TempDir(), "offline.tar")
	out.Reset()
	if code := run(context.Background(), []string{"backup", "--data", dataA, "--out", offline}, io.Discard, &out); code != 0 || !strings.Contains(out.String(), "offline") {
		t.Fatalf("offline backup: exit %d: %s", code, out.String())
	}
	dataC := t.TempDir()
	if code := run(context.Background(), []string{"restore", "--in", offline, "--data", dataC}, io.Discard, &out); code != 0 {
		t.Fatalf("restore offline backup: exit %d: %s", code, out.String())
	}
	env = chattest.Start(t, server.Config{DataDir: dataC})
	if last, err := env.Srv.Store().LastID("saved"); err != nil || last != 5 {
		t.Fatalf("offline backup has last id %d (%v), want 5 (it includes the message sent after the online one)", last, err)
	}
}

func TestBackupAndRestoreRefuseBadArguments(t *testing.T) {
	for _, args := range [][]string{
		{"backup"},
		{"backup", "--out", filepath.Join(t.TempDir(), "x.tar"), "--data", filepath.Join(t.TempDir(), "nothing-here")},
		{"restore", "--in", "x.tar"},
		{"restore", "--in", filepath.Join(t.TempDir(), "missing.tar"), "--data", t.TempDir()},
		{"backup", "--out", "x", "extra"},
	} {
		var stderr bytes.Buffer
		if code := run(context.Background(), args, io.Discard, &stderr); code == 0 || !strings.Contains(stderr.String(), "pandachat") && !strings.Contains(stderr.String(), "Usage") {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr.String())
		}
	}
}

// offlineArchive writes a data directory with three messages and one 64 KiB
// media file, backs it up offline and returns the archive's bytes.
func offlineArchive(t *testing.T) []byte {
	t.Helper()
	data := t.TempDir()
	s, err := persistence.OpenBadger(filepath.Join(data, "store"), persistence.Options{})
	if err != nil {
		t.Fatal(err)
	}
	id := strings.Repeat("ab", 32)
	err = s.AppendMessages("kept", []persistence.Message{{ID: 1, Data: []byte(`{"id":1}`)}, {ID: 2, Data: []byte(`{"id":2}`)}, {ID: 3, Data: []byte(`{"id":3}`)}})
	if err == nil {
		err = s.PutMedia(persistence.Media{ID: id, Owner: "u1", MIME: "image/png", Size: 64 << 10})
	}
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(data, "media", id[:2], id[2:])
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, bytes.Repeat([]byte{7}, 64<<10), 0o640); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	archive := filepath.Join(t.TempDir(), "a.tar")
	if code := run(context.Background(), []string{"backup", "--data", data, "--out", archive}, io.Discard, &out); code != 0 {
		t.Fatalf("offline backup: exit %d: %s", code, out.String())
	}
	b, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// A restore is all or nothing: a failure (here after the store was loaded,
// in the middle of the media) leaves no trace, into a new directory or into an
// empty one, and the same archive then restores whole into the same place.
func TestRestoreIsAllOrNothing(t *testing.T) {
	good := offlineArchive(t)
	truncated := good[:len(good)-1024-(32<<10)] // end marker and half the media file cut off
	for _, into := range []string{"a new directory", "an empty directory"} {
		t.Run(into, func(t *testing.T) {
			parent := t.TempDir()
			data := filepath.Join(parent, "data")
			if into == "an empty directory" {
				if err := os.Mkdir(data, 0o700); err != nil {
					t.Fatal(err)
				}
			}
			var stderr bytes.Buffer
			code := restoreWith(truncated, data, &stderr)
			if code != 1 || !strings.Contains(stderr.String(), "restore: media") {
				t.Fatalf("truncated archive: exit %d: %s", code, stderr.String())
			}
			if into == "a new directory" {
				if got := names(t, parent); len(got) != 0 {
					t.Fatalf("a failed restore left %v", got)
				}
			} else {
				if got := names(t, parent); len(got) != 1 || got[0] != "data" {
					t.Fatalf("a failed restore left %v beside the directory", got)
				}
				if got := names(t, data); len(got) != 0 {
					t.Fatalf("a failed restore left %v in the directory", got)
				}
				if fi, err := os.Stat(data); err != nil || fi.Mode().Perm() != 0o700 {
					t.Fatalf("the directory changed: %v %v", fi, err)
				}
			}

			stderr.Reset()
			if code := restoreWith(good, data, &stderr); code != 0 {
				t.Fatalf("restore: exit %d: %s", code, stderr.String())
			}
			if got := names(t, parent); len(got) != 1 || got[0] != "data" {
				t.Fatalf("after the restore the parent holds %v", got)
			}
			if got := names(t, data); len(got) != 2 || got[0] != "media" || got[1] != "store" {
				t.Fatalf("after the restore the directory holds %v", got)
			}
			env := chattest.Start(t, server.Config{DataDir: data})
			if last, err := env.Srv.Store().LastID("kept"); err != nil || last != 3 {
				t.Fatalf("restored store: last id %d, %v; want 3", last, err)
			}
			id := strings.Repeat("ab", 32)
			if b, err := os.ReadFile(filepath.Join(data, "media", id[:2], id[2:])); err != nil || len(b) != 64<<10 {
				t.Fatalf("restored media: %d bytes, %v", len(b), err)
			}
		})
	}
}

// restoreWith runs "pandachat restore --in - --data data" with archive on stdin.
func restoreWith(archive []byte, data string, stderr io.Writer) int {
	return restore([]string{"--in", "-", "--data", data}, bytes.NewReader(archive), stderr)
}
