// Package deploy_test runs the shipped deploy/nginx.conf in front of a real
// server and talks to it as a mini-program would: https and wss only.
package deploy_test

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pandachat/pandachat/internal/chattest"
	"github.com/pandachat/pandachat/server"
)

const nginxBin = "/usr/sbin/nginx"

// TestNginxInFront starts nginx with deploy/nginx.conf (ports, upstream and
// certificate paths substituted; every other directive as shipped) in front of
// a server started with --trust-proxy.
func TestNginxInFront(t *testing.T) {
	if _, err := os.Stat(nginxBin); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing: CI must install the nginx package", nginxBin)
		}
		t.Skipf("%s not installed (apt-get install nginx); skipping the reverse-proxy test", nginxBin)
	}
	log := &chattest.SyncBuffer{}
	env := chattest.Start(t, server.Config{
		DevLogin: true, TrustProxy: true,
		Logger: slog.New(slog.NewTextHandler(log, nil)),
	})
	origin := startNginx(t, strings.TrimPrefix(env.URL, "http://"))
	p := chattest.RemoteTLS(t, origin.https, origin.pool)

	// https login and wss chat between two clients.
	alice, bob := p.DevLogin("alice"), p.DevLogin("bob")
	a, b := p.Dial(alice, "room=proxied"), p.Dial(bob, "room=proxied")
	a.NextOfType("system")
	b.NextOfType("system")
	a.Send(map[string]any{"text": true, "content": "through nginx"})
	if f := b.NextOfType("remote"); f["content"] != "through nginx" || f["nickName"] != "alice" {
		t.Fatalf("bob got %v", f)
	}
	b.Send(map[string]any{"text": true, "content": "and back"})
	if f := a.NextOfType("remote"); f["content"] != "and back" {
		t.Fatalf("alice got %v", f)
	}

	// An upload gets an absolute URL on the nginx https origin, and downloads through it.
	img := chattest.PNG(4, 3)
	code, ans := p.Upload(alice, "photo.png", img)
	u, _ := ans["url"].(string)
	if code != 200 || !strings.HasPrefix(u, origin.https+"/media/") {
		t.Fatalf("upload: HTTP %d %v, want a media URL under %s", code, ans, origin.https)
	}
	resp, err := p.HTTP.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(got, img) || resp.Header.Get("Content-Type") != "image/png" {
		t.Fatalf("download: HTTP %d %s, %d bytes, want %d", resp.StatusCode, resp.Header.Get("Content-Type"), len(got), len(img))
	}
	// The image message broadcast carries the same https URL.
	a.Send(map[string]any{"gallery": true, "url": u})
	if f := b.NextOfType("remote"); f["url"] != u {
		t.Fatalf("gallery url %v, want %s", f["url"], u)
	}

	// An image of almost the full 10 MiB limit passes nginx's body limit...
	big := chattest.PNG(1600, 1600)
	if len(big) < 10<<20-300<<10 || len(big) > 10<<20 {
		t.Fatalf("test image is %d bytes, want just under 10 MiB", len(big))
	}
	if code, body := p.Upload(alice, "photo.png", big); code != 200 {
		t.Fatalf("upload of %d bytes through nginx: HTTP %d %v", len(big), code, body)
	}
	// ... and a body above it is refused by nginx before the server reads it.
	if code, _ := p.Upload(alice, "photo.png", make([]byte, 12<<20)); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("12 MiB upload: HTTP %d, want 413", code)
	}

	// /metrics is not public; plain http redirects to https.
	if resp, err := p.HTTP.Get(origin.https + "/metrics"); err != nil || resp.StatusCode != 404 {
		t.Fatalf("/metrics through nginx: %v %v, want 404", resp, err)
	} else {
		resp.Body.Close()
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err = noFollow.Get(origin.http + "/ws")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != 301 || !strings.HasPrefix(loc, "https://") {
		t.Fatalf("plain http: HTTP %d Location %q, want a redirect to https", resp.StatusCode, loc)
	}

	// nginx's access log has every request, and no query string: the
	// sessions these clients put in the /ws URL (as the original client
	// does) are not in it. The http{} level log gets nothing from this site.
	plainSkey := noFollow // a request on port 80 with a session in its query
	if resp, err := plainSkey.Get(origin.http + "/ws?X-WX-Id=" + alice.ID + "&X-WX-Skey=" + alice.Skey); err == nil {
		resp.Body.Close()
	}
	// A WebSocket request is logged when it ends.
	_ = a.Conn.WriteClose(1000, nil)
	_ = b.Conn.WriteClose(1000, nil)
	a.Closed()
	b.Closed()
	var access string
	for deadline := time.Now().Add(chattest.Wait); ; time.Sleep(20 * time.Millisecond) {
		logged, _ := os.ReadFile(filepath.Join(origin.prefix, "pandachat.access.log"))
		access = string(logged)
		if strings.Count(access, `"GET /ws HTTP/1.1" 101`) == 2 || time.Now().After(deadline) {
			break
		}
	}
	for _, want := range []string{`"GET /ws HTTP/1.1" 101`, `"POST /login/dev HTTP/1.1" 200`, `"POST /upload HTTP/1.1" 200`, `"GET /ws HTTP/1.1" 301`} {
		if !strings.Contains(access, want) {
			t.Errorf("access log lacks %s:\n%s", want, access)
		}
	}
	for _, secret := range []string{"?", "X-WX", alice.Skey, bob.Skey, alice.ID} {
		if strings.Contains(access, secret) {
			t.Errorf("access log contains %q:\n%s", secret, access)
		}
	}
	if other, _ := os.ReadFile(filepath.Join(origin.prefix, "access.log")); strings.Contains(string(other), "/ws") {
		t.Errorf("the http{} access log got this site's requests:\n%s", other)
	}

	// The server logs the client's address that nginx forwarded (X-Real-IP has
	// no port; the proxy's own connection would have one).
	opened := 0
	for _, line := range strings.Split(log.String(), "\n") {
		if strings.Contains(line, `msg="connection opened"`) {
			opened++
			if !regexp.MustCompile(`remote=127\.0\.0\.1( |$)`).MatchString(line) {
				t.Errorf("connection log without the forwarded address: %s", line)
			}
		}
	}
	if opened != 2 {
		t.Fatalf("%d connection lines, want 2:\n%s", opened, log)
	}
}

type nginxOrigin struct {
	https, http string
	pool        *x509.CertPool
	prefix      string // nginx's directory: its logs are here
}

// startNginx runs nginx in the foreground under a temp prefix, proxying to upstream.
func startNginx(t *testing.T, upstream string) nginxOrigin {
	t.Helper()
	return startNginxConf(t, "nginx.conf", replacement{"server 127.0.0.1:8765;", "server " + upstream + ";"})
}

// replacement is a text of a shipped file and what the test puts instead.
type replacement struct{ old, new string }

// startNginxConf runs nginx with the shipped site file, its upstream servers
// replaced by upstreams (and ports, certificates and logs by the test's).
func startNginxConf(t *testing.T, file string, upstreams ...replacement) nginxOrigin {
	t.Helper()
	prefix := t.TempDir()
	cert, key, pool := chattest.SelfSigned(t, prefix)
	httpsPort, httpPort := freePort(t), freePort(t)
	site, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	conf := string(site)
	for _, r := range append(upstreams, []replacement{
		{"    listen [::]:80;\n", ""},
		{"    listen [::]:443 ssl;\n", ""},
		{"listen 80;", "listen 127.0.0.1:" + httpPort + ";"},
		{"listen 443 ssl;", "listen 127.0.0.1:" + httpsPort + " ssl;"},
		{"/etc/letsencrypt/live/chat.example.com/fullchain.pem", cert},
		{"/etc/letsencrypt/live/chat.example.com/privkey.pem", key},
		{"/var/log/nginx/pandachat.access.log", filepath.Join(prefix, "pandachat.access.log")},
	}...) {
		if !strings.Contains(conf, r.old) {
			t.Fatalf("deploy/%s no longer contains %q: update this test with it", file, r.old)
		}
		conf = strings.ReplaceAll(conf, r.old, r.new)
	}
	if err := os.WriteFile(filepath.Join(prefix, "pandachat.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	// What a distribution's nginx.conf provides around conf.d; one process, so
	// it runs as the test's user and can use the temp prefix.
	main := fmt.Sprintf(`daemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 256; }
http {
    default_type application/octet-stream;
    access_log %[1]s/access.log;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    include %[1]s/pandachat.conf;
}
`, prefix)
	mainConf := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(mainConf, []byte(main), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"-p", prefix, "-e", filepath.Join(prefix, "error.log"), "-c", mainConf}
	if out, err := exec.Command(nginxBin, append(args, "-t")...).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	cmd := exec.Command(nginxBin, args...)
	var out chattest.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt) // fast shutdown
		select {
		case <-exited:
		case <-time.After(chattest.Wait):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(prefix, "error.log"))
			t.Logf("nginx output:\n%s\nerror.log:\n%s", out.String(), b)
		}
	})
	deadline := time.Now().Add(chattest.Wait)
	for {
		c, err := net.Dial("tcp", "127.0.0.1:"+httpsPort)
		if err == nil {
			c.Close()
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("nginx exited: %v\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx not listening on %s", httpsPort)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nginxOrigin{https: "https://127.0.0.1:" + httpsPort, http: "http://127.0.0.1:" + httpPort, pool: pool, prefix: prefix}
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}
