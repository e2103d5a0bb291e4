// Package deploy_test runs the shipped deploy/nginx.conf in front of a real
// server and talks to it as a mini-program would: https and wss only.
package deploy_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"image"
	"image/png"
	"io"
	"log/slog"
	"math/big"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lxzan/gws"

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
	log := &syncBuffer{}
	env := chattest.Start(t, server.Config{
		DevLogin: true, TrustProxy: true,
		Logger: slog.New(slog.NewTextHandler(log, nil)),
	})
	origin := startNginx(t, strings.TrimPrefix(env.URL, "http://"))
	p := newPeer(origin.https, origin.pool)

	// https login and wss chat between two clients.
	alice, bob := p.devLogin(t, "alice"), p.devLogin(t, "bob")
	a, b := p.dial(t, alice, "room=proxied"), p.dial(t, bob, "room=proxied")
	a.next(t, "system")
	b.next(t, "system")
	a.send(t, map[string]any{"text": true, "content": "through nginx"})
	if f := b.next(t, "remote"); f["content"] != "through nginx" || f["nickName"] != "alice" {
		t.Fatalf("bob got %v", f)
	}
	b.send(t, map[string]any{"text": true, "content": "and back"})
	if f := a.next(t, "remote"); f["content"] != "and back" {
		t.Fatalf("alice got %v", f)
	}

	// An upload gets an absolute URL on the nginx https origin, and downloads through it.
	img := pngBytes(t, 4, 3, png.BestSpeed)
	u := p.upload(t, alice, img)
	if !strings.HasPrefix(u, origin.https+"/media/") {
		t.Fatalf("media URL %s, want it under %s", u, origin.https)
	}
	resp, err := p.http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(got, img) || resp.Header.Get("Content-Type") != "image/png" {
		t.Fatalf("download: HTTP %d %s, %d bytes, want %d", resp.StatusCode, resp.Header.Get("Content-Type"), len(got), len(img))
	}
	// The image message broadcast carries the same https URL.
	a.send(t, map[string]any{"gallery": true, "url": u})
	if f := b.next(t, "remote"); f["url"] != u {
		t.Fatalf("gallery url %v, want %s", f["url"], u)
	}

	// An image of almost the full 10 MiB limit passes nginx's body limit...
	big := pngBytes(t, 1600, 1600, png.NoCompression)
	if len(big) < 10<<20-300<<10 || len(big) > 10<<20 {
		t.Fatalf("test image is %d bytes, want just under 10 MiB", len(big))
	}
	if code, body := p.postFile(t, alice, big); code != 200 {
		t.Fatalf("upload of %d bytes through nginx: HTTP %d %s", len(big), code, body)
	}
	// ... and a body above it is refused by nginx before the server reads it.
	if code, _ := p.postFile(t, alice, make([]byte, 12<<20)); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("12 MiB upload: HTTP %d, want 413", code)
	}

	// /metrics is not public; plain http redirects to https.
	if resp, err := p.http.Get(origin.https + "/metrics"); err != nil || resp.StatusCode != 404 {
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
}

// startNginx runs nginx in the foreground under a temp prefix, proxying to upstream.
func startNginx(t *testing.T, upstream string) nginxOrigin {
	t.Helper()
	prefix := t.TempDir()
	cert, key, pool := selfSigned(t, prefix)
	httpsPort, httpPort := freePort(t), freePort(t)
	site, err := os.ReadFile("nginx.conf")
	if err != nil {
		t.Fatal(err)
	}
	conf := string(site)
	for _, r := range []struct{ old, new string }{
		{"    listen [::]:80;\n", ""},
		{"    listen [::]:443 ssl;\n", ""},
		{"listen 80;", "listen 127.0.0.1:" + httpPort + ";"},
		{"listen 443 ssl;", "listen 127.0.0.1:" + httpsPort + " ssl;"},
		{"server 127.0.0.1:8765;", "server " + upstream + ";"},
		{"/etc/letsencrypt/live/chat.example.com/fullchain.pem", cert},
		{"/etc/letsencrypt/live/chat.example.com/privkey.pem", key},
	} {
		if !strings.Contains(conf, r.old) {
			t.Fatalf("deploy/nginx.conf no longer contains %q: update this test with it", r.old)
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
	var out syncBuffer
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
	return nginxOrigin{https: "https://127.0.0.1:" + httpsPort, http: "http://127.0.0.1:" + httpPort, pool: pool}
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

func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "chat.example.com"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"chat.example.com"},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// pngBytes makes a w×h PNG; with NoCompression and noisy pixels its size is
// about 4·w·h bytes.
func pngBytes(t *testing.T, w, h int, level png.CompressionLevel) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	rand.Read(img.Pix)
	var buf bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: level}).Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type session struct{ ID, Skey string }

// peer talks to one origin over https and wss, trusting pool.
type peer struct {
	base string
	tls  *tls.Config
	http *http.Client
}

func newPeer(base string, pool *x509.CertPool) *peer {
	cfg := &tls.Config{RootCAs: pool}
	return &peer{base: base, tls: cfg, http: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}}
}

func (p *peer) devLogin(t *testing.T, nick string) session {
	t.Helper()
	resp, err := p.http.Post(p.base+"/login/dev", "application/json", strings.NewReader(`{"nickName":"`+nick+`"}`))
	if err != nil {
		t.Fatalf("dev login: %v", err)
	}
	defer resp.Body.Close()
	var ans struct {
		Session session `json:"session"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil || resp.StatusCode != 200 || ans.Session.ID == "" {
		t.Fatalf("dev login: HTTP %d, %v", resp.StatusCode, err)
	}
	return ans.Session
}

// postFile sends data as the multipart field "file" of POST /upload.
func (p *peer) postFile(t *testing.T, s session, data []byte) (int, []byte) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("file", "photo.png")
	fw.Write(data)
	mw.Close()
	req, _ := http.NewRequest("POST", p.base+"/upload", &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("X-WX-Id", s.ID)
	req.Header.Set("X-WX-Skey", s.Skey)
	resp, err := p.http.Do(req)
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (p *peer) upload(t *testing.T, s session, img []byte) string {
	t.Helper()
	code, b := p.postFile(t, s, img)
	var ans struct{ URL string }
	if code != 200 || json.Unmarshal(b, &ans) != nil {
		t.Fatalf("upload: HTTP %d %s", code, b)
	}
	return ans.URL
}

type wsClient struct {
	gws.BuiltinEventHandler
	conn   *gws.Conn
	frames chan map[string]any
}

func (c *wsClient) OnMessage(_ *gws.Conn, m *gws.Message) {
	var v map[string]any
	json.Unmarshal(m.Bytes(), &v)
	m.Close()
	c.frames <- v
}

func (c *wsClient) OnClose(*gws.Conn, error) { close(c.frames) }

func (p *peer) dial(t *testing.T, s session, query string) *wsClient {
	t.Helper()
	u := "wss" + strings.TrimPrefix(p.base, "https") + "/ws?X-WX-Id=" + url.QueryEscape(s.ID) + "&X-WX-Skey=" + url.QueryEscape(s.Skey) + "&" + query
	c := &wsClient{frames: make(chan map[string]any, 1000)}
	conn, _, err := gws.NewClient(c, &gws.ClientOption{Addr: u, TlsConfig: p.tls})
	if err != nil {
		t.Fatalf("dial %s: %v", u, err)
	}
	c.conn = conn
	go conn.ReadLoop()
	t.Cleanup(func() { conn.WriteClose(1000, nil) })
	return c
}

func (c *wsClient) send(t *testing.T, v any) {
	t.Helper()
	b, _ := json.Marshal(v)
	if err := c.conn.WriteMessage(gws.OpcodeText, b); err != nil {
		t.Fatalf("send: %v", err)
	}
}

func (c *wsClient) next(t *testing.T, typ string) map[string]any {
	t.Helper()
	timeout := time.After(chattest.Wait)
	for {
		select {
		case f, ok := <-c.frames:
			if !ok {
				t.Fatalf("connection closed while waiting for a %q frame", typ)
			}
			if f["type"] == typ {
				return f
			}
		case <-timeout:
			t.Fatalf("no %q frame within %s", typ, chattest.Wait)
		}
	}
}
