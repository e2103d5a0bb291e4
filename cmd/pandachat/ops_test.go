package main

import (
	"bytes"
	"context"
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
	"math/big"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lxzan/gws"

	"github.com/pandachat/pandachat/internal/chattest"
	"github.com/pandachat/pandachat/server"
)

// syncBuffer collects a command's output while it runs.
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

// cliServer is "pandachat serve" running in this process, as an operator starts it.
type cliServer struct {
	url    string
	log    *syncBuffer
	cancel context.CancelFunc
	code   chan int
}

func startCLI(t *testing.T, args ...string) *cliServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &cliServer{log: &syncBuffer{}, cancel: cancel, code: make(chan int, 1)}
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

// selfSigned makes a certificate for 127.0.0.1 and localhost, writes it and its
// key as PEM files and returns their paths and a pool that trusts it.
func selfSigned(t testing.TB) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "pandachat test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

type session struct{ ID, Skey string }

// peer is one user talking to a server at base over HTTP(S) and WS(S).
type peer struct {
	base string
	tls  *tls.Config
	http *http.Client
}

func newPeer(base string, pool *x509.CertPool) *peer {
	p := &peer{base: base, http: &http.Client{Timeout: chattest.Wait}}
	if pool != nil {
		p.tls = &tls.Config{RootCAs: pool}
		p.http.Transport = &http.Transport{TLSClientConfig: p.tls}
	}
	return p
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

// do sends an authenticated request and returns the status and body.
func (p *peer) do(t *testing.T, s session, method, path, ctype string, body io.Reader) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, p.base+path, body)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	req.Header.Set("X-WX-Id", s.ID)
	req.Header.Set("X-WX-Skey", s.Skey)
	resp, err := p.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (p *peer) upload(t *testing.T, s session, img []byte) (mediaURL string) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("file", "a.png")
	fw.Write(img)
	mw.Close()
	code, b := p.do(t, s, "POST", "/upload", mw.FormDataContentType(), &body)
	var ans struct{ URL string }
	if code != 200 || json.Unmarshal(b, &ans) != nil {
		t.Fatalf("upload: HTTP %d %s", code, b)
	}
	return ans.URL
}

// wsClient records the frames of one WebSocket connection.
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
	u := "ws" + strings.TrimPrefix(p.base, "http") + "/ws?X-WX-Id=" + url.QueryEscape(s.ID) + "&X-WX-Skey=" + url.QueryEscape(s.Skey)
	if query != "" {
		u += "&" + query
	}
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

// next skips frames until one of the given type arrives.
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

func pngBytes(t *testing.T) []byte {
	var buf bytes.Buffer
	img := image.NewRGBA(image.Rect(0, 0, 4, 3))
	img.Pix[0] = 200 // content-addressed: make it differ from other tests' images
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// chat has a say "hello" to b through the server and checks both see it.
func chat(t *testing.T, p *peer, room string) {
	t.Helper()
	alice, bob := p.devLogin(t, "alice"), p.devLogin(t, "bob")
	a, b := p.dial(t, alice, "room="+room), p.dial(t, bob, "room="+room)
	a.next(t, "system")
	b.next(t, "system")
	a.send(t, map[string]any{"text": true, "content": "hello over " + room})
	if f := b.next(t, "remote"); f["content"] != "hello over "+room || f["nickName"] != "alice" {
		t.Fatalf("bob got %v", f)
	}
	if f := a.next(t, "user"); f["content"] != "hello over "+room {
		t.Fatalf("alice got %v", f)
	}
}

func TestDirectTLS(t *testing.T) {
	cert, key, pool := selfSigned(t)
	srv := startCLI(t, "--data", t.TempDir(), "--dev-login=true", "--tls-cert", cert, "--tls-key", key)
	if !strings.HasPrefix(srv.url, "https://") {
		t.Fatalf("server URL %s, want https", srv.url)
	}
	p := newPeer(srv.url, pool)
	chat(t, p, "tls")
	s := p.devLogin(t, "carol")
	img := pngBytes(t)
	u := p.upload(t, s, img)
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
	p := newPeer(srv.url, nil)
	s := p.devLogin(t, "dora")
	c := p.dial(t, s, "room=logs")
	c.next(t, "system")
	c.send(t, map[string]any{"text": true, "content": "hi"})
	c.next(t, "user")
	// A refused login must not log what it was given either.
	p.do(t, session{ID: s.ID, Skey: "wrong-skey-0123456789"}, "GET", "/login", "", nil)
	c.conn.WriteClose(1000, []byte("bye"))
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
	p := newPeer(srv.url, nil)
	alice := p.devLogin(t, "alice")
	img := pngBytes(t)
	mediaURL := p.upload(t, alice, img)
	c := p.dial(t, alice, "room=saved")
	c.next(t, "system")
	for i := range 3 {
		c.send(t, map[string]any{"text": true, "content": fmt.Sprint("message ", i+1)})
		c.next(t, "user")
	}
	c.send(t, map[string]any{"gallery": true, "url": mediaURL})
	c.next(t, "user")

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
	c.send(t, map[string]any{"text": true, "content": "after the backup"})
	c.next(t, "user")
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
	old := chattest.Session{ID: alice.ID, Skey: alice.Skey}
	var me map[string]any
	if code := env.Do(old, "GET", "/me", nil, &me); code != 200 || me["nickName"] != "alice" {
		t.Fatalf("session after restore: HTTP %d %v", code, me)
	}
	r := env.Dial(old, "room=saved&since=0")
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
