// Package chattest starts a real server on a loopback port and drives it with
// real WebSocket clients, for tests across the project.
package chattest

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lxzan/gws"

	"github.com/pandachat/pandachat/actors"
	"github.com/pandachat/pandachat/protocol"
	"github.com/pandachat/pandachat/server"
)

// Wait is how long a test waits for something that should happen.
const Wait = 10 * time.Second

// Env is a running server.
type Env struct {
	URL  string
	Srv  *server.Server
	Cfg  server.Config
	HTTP *http.Client // what DevLogin, Do and Upload send with
	tls  *tls.Config  // for wss:// dials; nil for ws://
	t    testing.TB
}

// Start runs a server with cfg on 127.0.0.1:0; DataDir defaults to a temp dir.
// The server is shut down when the test ends.
func Start(t testing.TB, cfg server.Config) *Env {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	cfg.Addr = "127.0.0.1:0"
	if cfg.DevLoginRate == (actors.Rate{}) {
		cfg.DevLoginRate = actors.Rate{Off: true} // tests log many users in from one address
	}
	if cfg.Logger == nil && os.Getenv("PANDA_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatalf("start server: %v", err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatalf("listen: %v", err)
	}
	go func() { _ = srv.Serve() }()
	e := &Env{URL: srv.URL(), Srv: srv, Cfg: cfg, HTTP: http.DefaultClient, t: t}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	return e
}

// Stop shuts the server down now; the cleanup's second Shutdown is a no-op.
func (e *Env) Stop() error {
	return e.Srv.Shutdown(context.Background())
}

// Session is a login answer.
type Session struct {
	ID, Skey string
	UserInfo map[string]any
}

// DevLogin logs a nickname in through POST /login/dev.
func (e *Env) DevLogin(nick string) Session {
	e.t.Helper()
	body, _ := json.Marshal(map[string]string{"nickName": nick})
	resp, err := e.HTTP.Post(e.URL+"/login/dev", "application/json", bytes.NewReader(body))
	if err != nil {
		e.t.Fatalf("dev login: %v", err)
	}
	defer resp.Body.Close()
	var ans struct {
		Session  struct{ ID, Skey string } `json:"session"`
		UserInfo map[string]any            `json:"userInfo"`
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || json.Unmarshal(b, &ans) != nil || ans.Session.ID == "" {
		e.t.Fatalf("dev login: HTTP %d %s", resp.StatusCode, b)
	}
	return Session{ID: ans.Session.ID, Skey: ans.Session.Skey, UserInfo: ans.UserInfo}
}

// Do sends an authenticated request and decodes the JSON answer into out (if not nil).
func (e *Env) Do(s Session, method, path string, body any, out any) int {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, e.URL+path, rd)
	req.Header.Set("X-WX-Id", s.ID)
	req.Header.Set("X-WX-Skey", s.Skey)
	resp, err := e.HTTP.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("%s %s: HTTP %d, not JSON: %s", method, path, resp.StatusCode, b)
		}
	}
	return resp.StatusCode
}

// Client is a real WebSocket client that records every frame it receives.
type Client struct {
	gws.BuiltinEventHandler
	Conn   *gws.Conn
	closed chan struct{}
	mu     sync.Mutex
	queue  [][]byte      // frames received and not yet read
	ready  chan struct{} // signalled when queue grows
	err    error
	t      testing.TB

	discard atomic.Bool  // count frames instead of keeping them
	count   atomic.Int64 // frames received
}

// Discard makes the client count incoming frames without keeping them, for
// bulk participants whose content a test does not read.
func (c *Client) Discard() { c.discard.Store(true) }

// Received is the number of frames received so far.
func (c *Client) Received() int64 { return c.count.Load() }

// Dial opens /ws with the session in headers and query, plus extra query parameters.
func (e *Env) Dial(s Session, query string) *Client {
	e.t.Helper()
	c, err := e.TryDial(s, query)
	if err != nil {
		e.t.Fatalf("dial: %v", err)
	}
	return c
}

// TryDial is Dial that returns the error.
func (e *Env) TryDial(s Session, query string) (*Client, error) {
	u := strings.Replace(e.URL, "http", "ws", 1) + "/ws?X-WX-Id=" + url.QueryEscape(s.ID) + "&X-WX-Skey=" + url.QueryEscape(s.Skey)
	if query != "" {
		u += "&" + query
	}
	h := http.Header{}
	h.Set("X-WX-Id", s.ID)
	h.Set("X-WX-Skey", s.Skey)
	c := &Client{closed: make(chan struct{}), ready: make(chan struct{}, 1), t: e.t}
	conn, _, err := gws.NewClient(c, &gws.ClientOption{Addr: u, RequestHeader: h, ReadMaxPayloadSize: 16 << 20, TlsConfig: e.tls.Clone()})
	if err != nil {
		return nil, err
	}
	c.Conn = conn
	go conn.ReadLoop()
	e.t.Cleanup(func() { _ = conn.WriteClose(1000, nil) })
	return c, nil
}

// DialBare opens /ws?query with no session in headers or query: a client
// that authenticates with a ticket, or with nothing.
func (e *Env) DialBare(query string) (*Client, error) {
	u := strings.Replace(e.URL, "http", "ws", 1) + "/ws?" + query
	c := &Client{closed: make(chan struct{}), ready: make(chan struct{}, 1), t: e.t}
	conn, _, err := gws.NewClient(c, &gws.ClientOption{Addr: u, ReadMaxPayloadSize: 16 << 20, TlsConfig: e.tls.Clone()})
	if err != nil {
		return nil, err
	}
	c.Conn = conn
	go conn.ReadLoop()
	e.t.Cleanup(func() { _ = conn.WriteClose(1000, nil) })
	return c, nil
}

func (c *Client) OnMessage(_ *gws.Conn, m *gws.Message) {
	c.count.Add(1)
	if c.discard.Load() {
		m.Close()
		return
	}
	c.mu.Lock()
	c.queue = append(c.queue, append([]byte(nil), m.Bytes()...))
	c.mu.Unlock()
	m.Close()
	select {
	case c.ready <- struct{}{}:
	default:
	}
}

func (c *Client) OnClose(_ *gws.Conn, err error) {
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
	close(c.closed)
}

// Send writes v as a JSON text frame.
func (c *Client) Send(v any) {
	c.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	c.SendRaw(gws.OpcodeText, b)
}

// SendRaw writes one frame as is.
func (c *Client) SendRaw(op gws.Opcode, b []byte) {
	c.t.Helper()
	if err := c.Conn.WriteMessage(op, b); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// Next returns the next frame decoded as a JSON object.
func (c *Client) Next() map[string]any {
	c.t.Helper()
	b := c.NextRaw()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		c.t.Fatalf("frame is not a JSON object: %s", b)
	}
	return m
}

// NextRaw returns the next frame's bytes.
func (c *Client) NextRaw() []byte {
	c.t.Helper()
	b, ok := c.take(Wait)
	if !ok {
		c.t.Fatalf("no frame within %s", Wait)
	}
	return b
}

func (c *Client) take(d time.Duration) ([]byte, bool) {
	timeout := time.After(d)
	for {
		c.mu.Lock()
		if len(c.queue) > 0 {
			b := c.queue[0]
			c.queue[0] = nil
			c.queue = c.queue[1:]
			c.mu.Unlock()
			return b, true
		}
		c.mu.Unlock()
		select {
		case <-c.ready:
		case <-timeout:
			return nil, false
		}
	}
}

// NextOfType skips frames until one with the given "type" arrives.
func (c *Client) NextOfType(typ string) map[string]any {
	c.t.Helper()
	deadline := time.Now().Add(Wait)
	for time.Now().Before(deadline) {
		m := c.Next()
		if m["type"] == typ {
			return m
		}
	}
	c.t.Fatalf("no %q frame within %s", typ, Wait)
	return nil
}

// Quiet asserts that no frame arrives within d.
func (c *Client) Quiet(d time.Duration) {
	c.t.Helper()
	if b, ok := c.take(d); ok {
		c.t.Fatalf("unexpected frame: %s", b)
	}
}

// Pending is the number of frames received and not yet read.
func (c *Client) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue)
}

// Closed waits for the connection to close and returns the close code (0 when
// the connection dropped without a close frame).
func (c *Client) Closed() int {
	c.t.Helper()
	select {
	case <-c.closed:
	case <-time.After(Wait):
		c.t.Fatalf("connection not closed within %s", Wait)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var ce *gws.CloseError
	if errors.As(c.err, &ce) {
		return int(ce.Code)
	}
	return 0
}

// NextOrClose waits for the next frame or the close, whichever comes first:
// closed is true (with the close code) when the connection closed with no
// frame left to read.
func (c *Client) NextOrClose() (frame map[string]any, code int, closed bool) {
	c.t.Helper()
	deadline := time.After(Wait)
	for {
		if c.Pending() > 0 {
			return c.Next(), 0, false
		}
		select {
		case <-c.ready:
		case <-c.closed:
			if c.Pending() > 0 {
				return c.Next(), 0, false
			}
			return nil, c.Closed(), true
		case <-deadline:
			c.t.Fatalf("no frame and no close within %s", Wait)
		}
	}
}

// Poll returns the next frame if one arrives within d; unlike Next it never
// fails the test, so goroutines other than the test's may use it.
func (c *Client) Poll(d time.Duration) ([]byte, bool) { return c.take(d) }

// CloseCode is the close code once the connection has closed (0 when it
// dropped without a close frame), and false while it is open.
func (c *Client) CloseCode() (int, bool) {
	if !c.IsClosed() {
		return 0, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var ce *gws.CloseError
	if errors.As(c.err, &ce) {
		return int(ce.Code), true
	}
	return 0, true
}

// IsClosed reports whether the connection has closed.
func (c *Client) IsClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

// Chat is a decoded chat frame.
type Chat struct {
	Type      string `json:"type"`
	ID        uint64 `json:"id"`
	Number    int    `json:"number"`
	Time      int64  `json:"time"`
	UID       string `json:"uid"`
	NickName  string `json:"nickName"`
	AvatarURL string `json:"avatarUrl"`
	Text      bool   `json:"text"`
	Content   string `json:"content"`
	Gallery   bool   `json:"gallery"`
	URL       string `json:"url"`
	CID       string `json:"cid"`
	Error     string `json:"error"`
	Num       int    `json:"num"`
}

// NextChat returns the next frame decoded as a Chat.
func (c *Client) NextChat() Chat {
	c.t.Helper()
	b := c.NextRaw()
	var m Chat
	if err := json.Unmarshal(b, &m); err != nil {
		c.t.Fatalf("bad frame %s: %v", b, err)
	}
	return m
}

// String helps test failure messages.
func (m Chat) String() string { return fmt.Sprintf("%s#%d %q", m.Type, m.ID, m.Content) }

// Magic is re-exported for tests.
const Magic = protocol.Magic

// Remote wraps a server running elsewhere (a child process) at url.
func Remote(t testing.TB, url string) *Env { return &Env{URL: url, HTTP: http.DefaultClient, t: t} }
