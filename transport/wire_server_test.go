package transport_test

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pandachat/pandachat/actors"
	"github.com/pandachat/pandachat/internal/chattest"
	"github.com/pandachat/pandachat/server"
	"github.com/pandachat/pandachat/transport"
)

// rawWS is a WebSocket client written by hand over TCP, so that a test can
// send any bytes at all after a real upgrade.
type rawWS struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
}

// dialRaw upgrades a TCP connection to /ws with the session in headers;
// early is written in the same write, right behind the request.
func dialRaw(t *testing.T, env *chattest.Env, s chattest.Session, query string, early []byte) *rawWS {
	t.Helper()
	u, err := url.Parse(env.URL)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	req := fmt.Sprintf("GET /ws?%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\nX-WX-Id: %s\r\nX-WX-Skey: %s\r\n\r\n",
		query, u.Host, base64.StdEncoding.EncodeToString(key), s.ID, s.Skey)
	_ = conn.SetDeadline(time.Now().Add(chattest.Wait))
	if _, err := conn.Write(append([]byte(req), early...)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: HTTP %d", resp.StatusCode)
	}
	return &rawWS{t: t, conn: conn, br: br}
}

// frame builds a masked client frame.
func frame(b0 byte, payload []byte) []byte {
	return append(header(b0, uint64(len(payload))), mask(payload)...)
}

// header is a masked client frame header in the shortest length form.
func header(b0 byte, n uint64) []byte {
	h := []byte{b0, 0x80}
	switch {
	case n > 0xFFFF:
		h[1] |= 127
		h = binary.BigEndian.AppendUint64(h, n)
	case n > 125:
		h[1] |= 126
		h = binary.BigEndian.AppendUint16(h, uint16(n))
	default:
		h[1] |= byte(n)
	}
	return append(h, maskKey[:]...)
}

var maskKey = [4]byte{0x11, 0x22, 0x33, 0x44}

func mask(p []byte) []byte {
	out := make([]byte, len(p))
	for i, c := range p {
		out[i] = c ^ maskKey[i%4]
	}
	return out
}

func (c *rawWS) write(b []byte) {
	c.t.Helper()
	_ = c.conn.SetWriteDeadline(time.Now().Add(chattest.Wait))
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// next reads one server frame within d.
func (c *rawWS) next(d time.Duration) (op byte, payload []byte, err error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		return 0, nil, err
	}
	if h[1]&0x80 != 0 {
		return 0, nil, fmt.Errorf("server frame is masked")
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(c.br, b[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(c.br, b[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if n > 1<<20 {
		return 0, nil, fmt.Errorf("server frame of %d bytes", n)
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(c.br, payload); err != nil {
		return 0, nil, err
	}
	return h[0] & 0x0f, payload, nil
}

// closeCode skips data frames until the server's close frame and returns its
// code; 0 when the connection ended without one, -1 when nothing ended within d.
func (c *rawWS) closeCode(d time.Duration) int {
	c.t.Helper()
	for {
		op, p, err := c.next(d)
		var ne net.Error
		switch {
		case err != nil && errors.As(err, &ne) && ne.Timeout():
			return -1
		case err != nil:
			return 0
		case op == 0x8 && len(p) >= 2:
			return int(binary.BigEndian.Uint16(p))
		case op == 0x8:
			return 1005
		}
	}
}

// nextOp skips frames until one with opcode op.
func (c *rawWS) nextOp(op byte) []byte {
	c.t.Helper()
	for {
		got, p, err := c.next(chattest.Wait)
		if err != nil {
			c.t.Fatalf("waiting for opcode %#x: %v", op, err)
		}
		if got == 0x8 {
			c.t.Fatalf("waiting for opcode %#x: closed %x", op, p)
		}
		if got == op {
			return p
		}
	}
}

// pair is two users chatting in one room: the proof that the server serves.
type pair struct {
	t    *testing.T
	a, b *chattest.Client
	n    int
}

func newPair(t *testing.T, env *chattest.Env) *pair {
	t.Helper()
	p := &pair{t: t, a: env.Dial(env.DevLogin("alice"), "room=wire"), b: env.Dial(env.DevLogin("bob"), "room=wire")}
	p.a.NextOfType("system")
	p.b.NextOfType("system")
	p.chat()
	return p
}

// chat sends one message from a and sees it arrive at both.
func (p *pair) chat() {
	p.t.Helper()
	p.n++
	want := fmt.Sprintf("still chatting %d", p.n)
	p.a.Send(map[string]any{"text": true, "content": want})
	for { // skipping what others posted
		if m := p.a.NextChat(); m.Type == "user" && m.Content == want {
			break
		}
	}
	for { // other members of the room may have posted in between
		if m := p.b.NextChat(); m.Type == "remote" && m.Content == want {
			return
		}
	}
}

func wireEnv(t *testing.T, logs io.Writer) *chattest.Env {
	cfg := server.Config{DevLogin: true, Rate: actors.Rate{Off: true}}
	if logs != nil {
		cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	}
	return chattest.Start(t, cfg)
}

// The frame that used to kill the process (a 64-bit length with its top bit
// set) closes only its own connection with 1002, whether it comes after the
// upgrade or right behind the request in the same packet; everyone else goes
// on chatting and new connections are served.
func TestKillerFrameClosesOnlyItsConnection(t *testing.T) {
	env := wireEnv(t, nil)
	p := newPair(t, env)
	m := env.DevLogin("mallory")
	killer := []byte{0x81, 0xFF, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x11, 0x22, 0x33, 0x44}

	r := dialRaw(t, env, m, "", nil)
	r.nextOp(0x1) // the system frame: the connection is in the room
	r.write(killer)
	if code := r.closeCode(chattest.Wait); code != 1002 {
		t.Errorf("after the upgrade: close %d, want 1002", code)
	}
	p.chat()

	r = dialRaw(t, env, m, "", killer)
	if code := r.closeCode(chattest.Wait); code != 1002 {
		t.Errorf("behind the request: close %d, want 1002", code)
	}
	p.chat()

	c := env.Dial(m, "room=wire")
	if n := c.NextOfType("system"); n["num"] == nil {
		t.Fatalf("new connection: %v", n)
	}
	p.chat()
}

// Malformed frame headers, each from its own connection, get the close code
// of their fault; the server keeps serving the others.
func TestMalformedFrames(t *testing.T) {
	env := wireEnv(t, nil)
	p := newPair(t, env)
	var sessions []chattest.Session
	for i := 0; i < 4; i++ {
		sessions = append(sessions, env.DevLogin(fmt.Sprintf("fuzzer%d", i)))
	}
	long := func(b0 byte, n uint64) []byte { // the 8-byte length form, whatever n
		h := binary.BigEndian.AppendUint64([]byte{b0, 0x80 | 127}, n)
		return append(h, maskKey[:]...)
	}
	cases := []struct {
		name string
		in   []byte
		code int
	}{
		{"length 2^63", long(0x81, 1<<63), 1002},
		{"length 2^64-1", long(0x82, 1<<64-1), 1002},
		{"length 2^63+5", long(0x81, 1<<63+5), 1002},
		{"length 2^63-1", long(0x81, 1<<63-1), 1009},
		{"length 2^32", long(0x81, 1<<32), 1009},
		{"length limit+1", long(0x81, 64<<10+1), 1009},
		{"continuation 2^64-1", long(0x00, 1<<64-1), 1002},
		{"RSV1", frame(0xC1, []byte("{}")), 1002},
		{"RSV2", frame(0xA1, []byte("{}")), 1002},
		{"RSV3", frame(0x91, []byte("{}")), 1002},
		{"opcode 3", frame(0x83, nil), 1002},
		{"opcode 7", frame(0x87, nil), 1002},
		{"opcode 0xB", frame(0x8B, nil), 1002},
		{"opcode 0xF", frame(0x8F, []byte("x")), 1002},
		{"fragmented ping", frame(0x09, []byte("p")), 1002},
		{"fragmented close", frame(0x08, []byte{0x03, 0xE8}), 1002},
		{"ping of 126 bytes", header(0x89, 126), 1002},
		{"close with a 64-bit length", long(0x88, 1<<63), 1002},
		{"unmasked text", []byte{0x81, 0x02, '{', '}'}, 1002},
		{"unmasked close", []byte{0x88, 0x02, 0x03, 0xE8}, 1002},
		{"continuation first", frame(0x80, []byte("x")), 1002},
		{"text inside a fragmented text", append(frame(0x01, []byte("{")), frame(0x81, []byte("}"))...), 1002},
		{"fragments above the limit together", append(frame(0x01, make([]byte, 40<<10)), frame(0x80, make([]byte, 40<<10))...), 1009},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := dialRaw(t, env, sessions[i%len(sessions)], "", nil)
			r.nextOp(0x1)
			r.write(c.in)
			if code := r.closeCode(chattest.Wait); code != c.code {
				t.Errorf("close %d, want %d", code, c.code)
			}
		})
		if i%4 == 3 {
			p.chat()
		}
	}
	p.chat()

	// Random headers: random first bytes and lengths anywhere up to 2^64-1,
	// each followed by a little payload. Whatever they are, the server answers
	// with a close of 1002, 1007, 1008 or 1009 at worst, or waits for the rest.
	rng := mrand.New(mrand.NewPCG(12, 2026))
	for i := 0; i < 60; i++ {
		b0 := byte(rng.Uint32())
		var in []byte
		switch i % 4 {
		case 0:
			in = long(b0, rng.Uint64())
		case 1:
			in = long(b0, rng.Uint64()|1<<63)
		case 2:
			in = header(b0, uint64(rng.IntN(200)))
		default:
			in = []byte{b0, byte(rng.Uint32())} // the mask bit at random
			in = append(in, make([]byte, 12)...)
		}
		in = append(in, []byte("0123456789")...)
		r := dialRaw(t, env, sessions[i%len(sessions)], "", nil)
		r.nextOp(0x1)
		r.write(in)
		switch code := r.closeCode(300 * time.Millisecond); code {
		case -1, 1002, 1007, 1008, 1009:
		default:
			t.Errorf("random header % x: close %d", in[:min(len(in), 14)], code)
		}
		_ = r.conn.Close()
		if i%10 == 9 {
			p.chat()
		}
	}
	if resp, err := http.Get(env.URL + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz after the malformed frames: %v", err)
	}
	p.chat()
}

// Client pings are answered with pongs carrying their payload; more than 20
// control frames within 10 s close the connection with 1008.
func TestClientPings(t *testing.T) {
	env := wireEnv(t, nil)
	p := newPair(t, env)
	r := dialRaw(t, env, env.DevLogin("pinger"), "room=wire", nil)
	r.nextOp(0x1)
	for i := 0; i < 20; i++ {
		want := fmt.Sprintf("ping-%02d", i)
		r.write(frame(0x89, []byte(want)))
		if got := string(r.nextOp(0xA)); got != want {
			t.Fatalf("pong %q, want %q", got, want)
		}
	}
	// Twenty are allowed: the connection still posts.
	r.write(frame(0x81, []byte(`{"text":true,"content":"after twenty pings"}`)))
	for {
		var m struct{ Type, Content string }
		if err := json.Unmarshal(r.nextOp(0x1), &m); err != nil {
			t.Fatal(err)
		}
		if m.Type == "user" && m.Content == "after twenty pings" {
			break
		}
	}
	r.write(frame(0x89, []byte("one too many")))
	if code := r.closeCode(chattest.Wait); code != 1008 {
		t.Errorf("21st control frame in 10 s: close %d, want 1008", code)
	}
	p.chat()
}

// A text frame that is not UTF-8 closes the connection with 1007.
func TestInvalidUTF8(t *testing.T) {
	env := wireEnv(t, nil)
	p := newPair(t, env)
	r := dialRaw(t, env, env.DevLogin("latin1"), "", nil)
	r.nextOp(0x1)
	r.write(frame(0x81, []byte("{\"text\":true,\"content\":\"caf\xe9\"}")))
	if code := r.closeCode(chattest.Wait); code != 1007 {
		t.Errorf("invalid UTF-8: close %d, want 1007", code)
	}
	p.chat()
}

// A panic in a connection's read loop (outside OnMessage, where gws has no
// recover) closes that connection with 1011, is logged with its stack, and
// releases the connection; the server keeps serving.
func TestReadLoopPanicClosesOnlyItsConnection(t *testing.T) {
	var logs chattest.SyncBuffer
	env := wireEnv(t, &logs)
	p := newPair(t, env)
	defer transport.SetPingHook(func(payload []byte) {
		if string(payload) == "boom" {
			panic("injected read loop panic")
		}
	})()
	open := env.Srv.Edge().Open()

	r := dialRaw(t, env, env.DevLogin("crasher"), "room=wire", nil)
	r.nextOp(0x1)
	r.write(frame(0x89, []byte("boom")))
	if code := r.closeCode(chattest.Wait); code != 1011 {
		t.Errorf("close %d, want 1011", code)
	}
	deadline := time.Now().Add(chattest.Wait)
	for env.Srv.Edge().Open() != open && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := env.Srv.Edge().Open(); n != open {
		t.Errorf("%d connections open, want %d: the crashed one was not released", n, open)
	}
	out := logs.String()
	for _, want := range []string{"panic serving a websocket", "injected read loop panic", "connection reader", "goroutine ", "OnPing"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	p.chat()
	c := env.Dial(env.DevLogin("after"), "room=wire")
	c.NextOfType("system")
	p.chat()
}

// Reads come straight from the socket (Linux): a peer that goes silent meets
// the idle deadline, one that resets or ends the connection is seen as such,
// and bytes that came with the upgrade request are read first. Each socket is
// released and logged with its reason; the others chat on.
func TestSocketReadEnds(t *testing.T) {
	for _, tc := range []struct {
		name   string
		idle   time.Duration
		end    func(r *rawWS)
		reason string
	}{
		{name: "silent", idle: 400 * time.Millisecond, end: func(*rawWS) {}, reason: `reason="idle timeout"`},
		{name: "reset", end: func(r *rawWS) {
			_ = r.conn.(*net.TCPConn).SetLinger(0) // the close sends RST
			_ = r.conn.Close()
		}, reason: "connection reset by peer"},
		{name: "end", end: func(r *rawWS) { _ = r.conn.(*net.TCPConn).CloseWrite() }, reason: "EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs chattest.SyncBuffer
			cfg := server.Config{DevLogin: true, Rate: actors.Rate{Off: true}, IdleTimeout: tc.idle,
				Logger: slog.New(slog.NewTextHandler(&logs, nil))}
			if tc.idle > 0 {
				cfg.PingInterval = tc.idle / 4 // the pair's clients answer; the raw one does not
			}
			env := chattest.Start(t, cfg)
			p := newPair(t, env)
			open := env.Srv.Edge().Open()
			// A frame right behind the request: read from what the HTTP server buffered.
			ping := frame(0x89, []byte("early"))
			r := dialRaw(t, env, env.DevLogin("reader"), "room=wire", ping)
			// Both the pong and the system frame are in before the end: the
			// server then has nothing to write that could meet a reset first.
			for pong, system := false, false; !pong || !system; {
				op, payload, err := r.next(chattest.Wait)
				if err != nil {
					t.Fatalf("pong %v, system frame %v: %v", pong, system, err)
				}
				switch op {
				case 0xA:
					if string(payload) != "early" {
						t.Fatalf("pong %q", payload)
					}
					pong = true
				case 0x1:
					system = system || strings.Contains(string(payload), `"system"`)
				}
			}
			tc.end(r)
			deadline := time.Now().Add(chattest.Wait)
			for !strings.Contains(logs.String(), tc.reason) || env.Srv.Edge().Open() != open {
				if time.Now().After(deadline) {
					t.Fatalf("%d sockets open, want %d; no close with %q in the log:\n%s", env.Srv.Edge().Open(), open, tc.reason, logs.String())
				}
				time.Sleep(10 * time.Millisecond)
			}
			p.chat()
		})
	}
}
