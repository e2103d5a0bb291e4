package server_test

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/lxzan/gws"

	"github.com/pandachat/pandachat/actors"
	"github.com/pandachat/pandachat/internal/chattest"
	"github.com/pandachat/pandachat/persistence"
	"github.com/pandachat/pandachat/server"
)

// One client sends without pause while another reconnects with since over and
// over: the reconnecting client's ids are strictly consecutive from since+1.
func TestReplaySeam(t *testing.T) {
	cfg := noLimit()
	cfg.ReplayLimit = 1 << 20 // the reader may fall far behind; this test is about the seam,
	cfg.Retention = -1        // not about the limits
	env := chattest.Start(t, cfg)
	a, b := env.DevLogin("sender"), env.DevLogin("reader")
	ca := env.Dial(a, "room=seam")
	ca.NextOfType("system")
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; !stop.Load(); i++ {
			if err := ca.Conn.WriteMessage(gws.OpcodeText, fmt.Appendf(nil, `{"text":true,"content":"m%d"}`, i)); err != nil {
				return
			}
			if i%20 == 0 {
				time.Sleep(time.Millisecond) // let the reader's joins interleave
			}
		}
	}()
	var last uint64
	for round := 0; round < 15; round++ {
		c := env.Dial(b, fmt.Sprintf("room=seam&since=%d", last))
		if m := c.NextChat(); m.Type != "system" {
			t.Fatalf("round %d: first frame %+v", round, m)
		}
		for n := 0; n < 40+round*7; n++ {
			m := c.NextChat()
			if m.ID != last+1 {
				t.Fatalf("round %d: got %+v after %d (gap or duplicate at the seam)", round, m, last)
			}
			last = m.ID
		}
		_ = c.Conn.WriteClose(1000, nil)
		c.Closed()
	}
	stop.Store(true)
	<-done
}

// A reconnect further behind than the replay limit gets the newest messages,
// oldest first, and then the live stream.
func TestReplayLimit(t *testing.T) {
	cfg := noLimit()
	cfg.ReplayLimit = 5
	env := chattest.Start(t, cfg)
	a := env.DevLogin("a")
	c := env.Dial(a, "room=lim")
	c.NextOfType("system")
	for i := 1; i <= 12; i++ {
		c.Send(map[string]any{"text": true, "content": fmt.Sprintf("n%d", i)})
		c.NextChat()
	}
	r := env.Dial(a, "room=lim&since=2")
	r.NextOfType("system")
	for want := uint64(8); want <= 12; want++ {
		if m := r.NextChat(); m.ID != want || m.Type != "user" {
			t.Fatalf("replay: got %+v, want id %d", m, want)
		}
	}
	c.Send(map[string]any{"text": true, "content": "live"})
	if m := r.NextChat(); m.ID != 13 {
		t.Fatalf("live after replay: %+v", m)
	}
	caughtUp := env.Dial(a, "room=lim&since=13")
	caughtUp.NextOfType("system")
	caughtUp.Quiet(100 * time.Millisecond)
}

func TestHistoryPages(t *testing.T) {
	cfg := noLimit()
	cfg.HistoryLimit = 20 // below the 25 messages stored, so that the cap shows
	env := chattest.Start(t, cfg)
	a, b := env.DevLogin("a"), env.DevLogin("b")
	ca := env.Dial(a, "room=hist")
	ca.NextOfType("system")
	for i := 1; i <= 25; i++ {
		ca.Send(map[string]any{"text": true, "content": fmt.Sprintf("n%d", i)})
		ca.NextChat()
	}
	var page []chattest.Chat
	if st := env.Do(b, "GET", "/history?room=hist&limit=10", nil, &page); st != 200 || len(page) != 10 || page[0].ID != 16 || page[9].ID != 25 {
		t.Fatalf("newest page: %d %v", st, page)
	}
	if page[0].Type != "remote" || page[0].Content != "n16" || page[0].NickName != "a" {
		t.Errorf("history item %+v", page[0])
	}
	var own []chattest.Chat
	env.Do(a, "GET", "/history?room=hist&limit=1", nil, &own)
	if len(own) != 1 || own[0].Type != "user" {
		t.Errorf("own message in history: %+v", own)
	}
	var older []chattest.Chat
	env.Do(b, "GET", "/history?room=hist&before=16&limit=10", nil, &older)
	if len(older) != 10 || older[0].ID != 6 || older[9].ID != 15 {
		t.Errorf("older page: %v", older)
	}
	var capped []chattest.Chat
	env.Do(b, "GET", "/history?room=hist&limit=100000", nil, &capped)
	if len(capped) != 20 || capped[0].ID != 6 || capped[19].ID != 25 {
		t.Errorf("a page asked for 100000 has %d messages (%v), want the newest 20", len(capped), capped)
	}
	var empty []chattest.Chat
	if st := env.Do(b, "GET", "/history?room=nobody-here", nil, &empty); st != 200 || len(empty) != 0 {
		t.Errorf("empty room: %d %v", st, empty)
	}
	for _, q := range []string{"room=bad/room", "limit=-1", "limit=x", "before=x"} {
		var e map[string]any
		if st := env.Do(b, "GET", "/history?"+q, nil, &e); st != 400 {
			t.Errorf("/history?%s: HTTP %d %v, want 400", q, st, e)
		}
	}
	var e map[string]any
	if st := env.Do(chattest.Session{ID: "x", Skey: "y"}, "GET", "/history", nil, &e); st != 401 || e["error"] != "ERR_INVALID_SESSION" {
		t.Errorf("no session: %d %v", st, e)
	}
}

// Retention keeps the newest --retention (K) messages of a room, trimming in
// the background in steps of K/10+1 messages rather than after every message:
// a trim runs once K/10+1 messages beyond the previous trim point are stored
// and leaves exactly the newest K; between trims the room holds up to K+K/10.
// With K = 20 (steps of 3) and one message at a time, the first trim comes
// with message 22 (leaving 3..22), the next with message 25 (leaving 6..25).
func TestRetention(t *testing.T) {
	cfg := noLimit()
	cfg.Retention = 20
	cfg.ReplayLimit = 1000
	env := chattest.Start(t, cfg)
	a := env.DevLogin("a")
	c := env.Dial(a, "room=keep")
	c.NextOfType("system")
	sent := uint64(0)
	sendTo := func(last uint64) {
		t.Helper()
		for sent < last {
			sent++
			c.Send(map[string]any{"text": true, "content": fmt.Sprintf("n%d", sent)})
			if m := c.NextChat(); m.ID != sent {
				t.Fatalf("message %d got id %d", sent, m.ID)
			}
		}
	}
	stored := func() (first, last uint64, n int) {
		t.Helper()
		var all []chattest.Chat
		if st := env.Do(a, "GET", "/history?room=keep&limit=100", nil, &all); st != 200 {
			t.Fatalf("history: HTTP %d", st)
		}
		for i, m := range all {
			if i > 0 && m.ID != all[i-1].ID+1 {
				t.Fatalf("history has a hole: %d after %d", m.ID, all[i-1].ID)
			}
		}
		if len(all) == 0 {
			return 0, 0, 0
		}
		return all[0].ID, all[len(all)-1].ID, len(all)
	}
	holds := func(wantFirst, wantLast uint64) {
		t.Helper()
		if first, last, _ := stored(); first != wantFirst || last != wantLast {
			t.Fatalf("history holds %d..%d, want %d..%d", first, last, wantFirst, wantLast)
		}
	}
	comesTo := func(wantFirst, wantLast uint64) {
		t.Helper()
		deadline := time.Now().Add(chattest.Wait)
		for {
			first, last, _ := stored()
			if first == wantFirst && last == wantLast {
				return
			}
			if first > wantFirst || time.Now().After(deadline) {
				t.Fatalf("history holds %d..%d, want %d..%d", first, last, wantFirst, wantLast)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	sendTo(21)
	holds(1, 21) // K+1: below a step, nothing to trim
	sendTo(22)
	comesTo(3, 22) // a step beyond K: trimmed to exactly K
	sendTo(24)
	holds(3, 24) // K+K/10 between two trims
	sendTo(25)
	comesTo(6, 25)
	sendTo(26)
	if _, _, n := stored(); n != 21 {
		t.Errorf("history holds %d after 26 messages, want 21", n)
	}
}

func TestPresence(t *testing.T) {
	env := chattest.Start(t, noLimit())
	a, b := env.DevLogin("watcher"), env.DevLogin("visitor")
	watcher := env.Dial(a, "room=p&presence=1")
	watcher.NextOfType("system")
	plain := env.Dial(a, "room=p")
	plain.NextOfType("system")
	if m := watcher.Next(); m["type"] != "presence" || m["event"] != "join" || m["num"] != float64(2) || m["uid"] != a.UserInfo["uid"] {
		t.Fatalf("presence for the second connection: %v", m)
	}
	v := env.Dial(b, "room=p")
	v.NextOfType("system")
	m := watcher.Next()
	if m["type"] != "presence" || m["event"] != "join" || m["num"] != float64(3) || m["nickName"] != "visitor" || m["uid"] != b.UserInfo["uid"] {
		t.Errorf("join: %v", m)
	}
	_ = v.Conn.WriteClose(1000, nil)
	m = watcher.Next()
	if m["type"] != "presence" || m["event"] != "leave" || m["num"] != float64(2) {
		t.Errorf("leave: %v", m)
	}
	plain.Quiet(200 * time.Millisecond) // without presence=1: only the original frames
}

// The rate is per user: a second connection of the same user spends the same
// budget. A burst far over it is refused frame by frame, not closed; refusals
// that keep coming for 5 s are a flood and close the connection with 1008.
func TestRateLimit(t *testing.T) {
	t.Parallel()
	env := chattest.Start(t, server.Config{DevLogin: true, Rate: actors.Rate{Messages: 20, Per: time.Hour}})
	a := env.DevLogin("flood")
	c1 := env.Dial(a, "")
	c1.NextOfType("system")
	c2 := env.Dial(a, "")
	c2.NextOfType("system")
	for i := 0; i < 12; i++ {
		c2.Send(map[string]any{"text": true, "content": "from c2"})
	}
	for i := 0; i < 12; i++ {
		if m := c2.NextChat(); m.Type != "user" {
			t.Fatalf("c2 message %d within the budget: %+v", i, m)
		}
	}
	// 8 of the user's 20 are left: a burst of 60 from c1 gets exactly 8 through.
	for i := 0; i < 60; i++ {
		c1.Send(map[string]any{"text": true, "content": "burst", "cid": fmt.Sprint(i)})
	}
	accepted, refused := 0, 0
	for accepted+refused < 60 {
		m := c1.NextChat()
		switch {
		case m.Type == "user" && m.CID != "":
			accepted++
		case m.Error == "ERR_RATE_LIMITED":
			if m.CID == "" {
				t.Fatalf("refusal without its cid: %+v", m)
			}
			refused++
		case m.Type == "user": // c2's messages, seen as the same user's
		default:
			t.Fatalf("unexpected frame %+v", m)
		}
	}
	if accepted != 8 || refused != 52 {
		t.Fatalf("burst: %d accepted, %d refused; want 8 and 52 (the budget is per user)", accepted, refused)
	}
	c1.Quiet(1200 * time.Millisecond) // a single burst is no flood
	if c1.IsClosed() {
		t.Fatal("closed after a single burst")
	}
	// Refusals every 100 ms: a flood once they have kept coming for 5 s.
	start := time.Now()
	for !c1.IsClosed() && time.Since(start) < 10*time.Second {
		_ = c1.Conn.WriteMessage(gws.OpcodeText, []byte(`{"text":true,"content":"flood"}`))
		time.Sleep(100 * time.Millisecond)
	}
	if code := c1.Closed(); code != 1008 {
		t.Errorf("persistent flooding: close %d, want 1008", code)
	}
	if d := time.Since(start); d < 5*time.Second {
		t.Errorf("closed after %s of refusals; a flood is 5 s of them", d)
	}
	if c2.IsClosed() {
		t.Error("the user's other connection was closed too")
	}
}

// silentClient never answers pings.
type silentClient struct {
	gws.BuiltinEventHandler
	closed chan error
}

func (s *silentClient) OnPing(*gws.Conn, []byte)     {}
func (s *silentClient) OnClose(_ *gws.Conn, e error) { s.closed <- e }

func TestHeartbeat(t *testing.T) {
	cfg := noLimit()
	cfg.PingInterval = 100 * time.Millisecond
	cfg.IdleTimeout = 400 * time.Millisecond
	env := chattest.Start(t, cfg)
	a, b := env.DevLogin("alive"), env.DevLogin("silent")
	alive := env.Dial(a, "room=hb&presence=1")
	alive.NextOfType("system")

	sc := &silentClient{closed: make(chan error, 1)}
	u := "ws" + env.URL[4:] + "/ws?room=hb&X-WX-Id=" + b.ID + "&X-WX-Skey=" + b.Skey
	conn, _, err := gws.NewClient(sc, &gws.ClientOption{Addr: u})
	if err != nil {
		t.Fatal(err)
	}
	go conn.ReadLoop()
	if m := alive.NextOfType("presence"); m["event"] != "join" {
		t.Fatalf("%v", m)
	}
	select {
	case <-sc.closed:
	case <-time.After(chattest.Wait):
		t.Fatal("a peer that answers no ping was not closed")
	}
	if m := alive.NextOfType("presence"); m["event"] != "leave" || m["num"] != float64(1) {
		t.Errorf("online count not corrected: %v", m)
	}
	// The answering client outlived several idle timeouts.
	if alive.IsClosed() {
		t.Error("a client that answers pings was closed")
	}
	runtime.KeepAlive(conn)
}

// A client that never reads is closed with 1013 while 200 others chat on.
func TestSlowConsumer(t *testing.T) {
	cfg := noLimit()
	cfg.Outbox = 128
	cfg.WriteTimeout = time.Minute // the stuck peer reads again at the end and must find the close frame
	env := chattest.Start(t, cfg)

	const others = 200
	var clients []*chattest.Client
	for i := 0; i < others; i++ {
		q := "room=slow"
		if i == 1 {
			q += "&presence=1" // sees the stuck client leave
		}
		c := env.Dial(env.DevLogin(fmt.Sprintf("u%d", i)), q)
		c.NextOfType("system")
		clients = append(clients, c)
	}
	stuck := newStuckClient(t, env, env.DevLogin("stuck"), "room=slow")
	for clients[1].NextOfType("presence")["nickName"] != "stuck" { // wait until the stuck client is in
	}
	sender := clients[0]
	for _, c := range append([]*chattest.Client{sender}, clients[4:]...) {
		c.Discard()
	}
	var lat []time.Duration
	pad := strings.Repeat("长", 1900) // ~6 KB frames fill the stuck socket's buffers sooner
	dropped := false
	for i := 0; i < 3000 && !dropped; i++ {
		start := time.Now()
		sender.Send(map[string]any{"text": true, "content": fmt.Sprintf("m%d %s", i, pad)})
		for _, c := range clients[1:4] {
			for {
				m := c.Next()
				if m["type"] == "presence" {
					if m["event"] == "leave" {
						if m["nickName"] != "stuck" {
							t.Fatalf("a client that reads was dropped: %v", m)
						}
						dropped = true
					}
					continue
				}
				if content, _ := m["content"].(string); !strings.HasPrefix(content, fmt.Sprintf("m%d ", i)) {
					t.Fatalf("out of order: %.10v", m)
				}
				lat = append(lat, time.Since(start))
				break
			}
		}
	}
	if !dropped {
		t.Fatal("the stuck client was never dropped from the room")
	}
	if code := stuck.closeCode(); code != 1013 {
		t.Errorf("stuck client: close %d, want 1013 (slow consumer)", code)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if p99 := lat[len(lat)*99/100]; p99 > 100*time.Millisecond*raceSlowdown {
		t.Errorf("others' p99 delivery latency %s while a consumer was stuck (generous bound: 100ms × %d under the race detector)", p99, raceSlowdown)
	}
	t.Logf("%d messages until the stuck client was dropped; p99 %s", len(lat)/3, lat[len(lat)*99/100])
}

// A thousand sockets with bad sessions leave neither memory nor keys behind.
func TestUnauthenticatedFlood(t *testing.T) {
	env := chattest.Start(t, noLimit())
	db := env.Srv.Store().(*persistence.Badger).DB()
	keysBefore := countKeys(t, db)
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}
	flood := func(n int) {
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				refusedDial(env, fmt.Sprintf("%064d", i))
			}()
			if i%50 == 49 {
				wg.Wait()
			}
		}
		wg.Wait()
	}
	flood(200) // warm pools and caches
	before := heap()
	flood(1000)
	after := heap()
	if after > before+8<<20 {
		t.Errorf("heap grew from %d to %d bytes after 1000 refused sockets", before, after)
	}
	if got := countKeys(t, db); got != keysBefore {
		t.Errorf("refused sockets wrote keys: %d before, %d after", keysBefore, got)
	}
}

// refusedDial opens a socket with a bad session and waits for the server to close
// it; nothing of the client outlives the call, so the heap measures the server.
func refusedDial(env *chattest.Env, id string) {
	c := &silentClient{closed: make(chan error, 1)}
	u := "ws" + env.URL[4:] + "/ws?X-WX-Id=" + id + "&X-WX-Skey=bad"
	conn, _, err := gws.NewClient(c, &gws.ClientOption{Addr: u})
	if err != nil {
		return
	}
	go conn.ReadLoop()
	select {
	case <-c.closed:
	case <-time.After(chattest.Wait):
		conn.NetConn().Close()
	}
}

func countKeys(t *testing.T, db *badger.DB) int {
	n := 0
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// stuckClient upgrades by hand on a socket with a tiny receive buffer, then
// reads nothing until asked for the close code.
type stuckClient struct {
	t    *testing.T
	conn net.Conn
}

func newStuckClient(t *testing.T, env *chattest.Env, s chattest.Session, query string) *stuckClient {
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 2048) })
	}}
	conn, err := d.Dial("tcp", env.URL[len("http://"):])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "GET /ws?%s&X-WX-Id=%s&X-WX-Skey=%s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", query, s.ID, s.Skey)
	br := bufio.NewReader(conn)
	status, err := br.ReadString('\n')
	if err != nil || !strings.Contains(status, "101") {
		t.Fatalf("handshake: %q %v", status, err)
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == "\r\n" {
			break
		}
	}
	return &stuckClient{t: t, conn: conn}
}

// closeCode reads everything the server sent and returns the close frame's code
// (0 when the connection ended without one).
func (s *stuckClient) closeCode() int {
	_ = s.conn.SetReadDeadline(time.Now().Add(chattest.Wait))
	br := bufio.NewReaderSize(s.conn, 1<<16)
	for {
		var h [2]byte
		if _, err := io.ReadFull(br, h[:]); err != nil {
			return 0
		}
		n := uint64(h[1] & 0x7f)
		switch n {
		case 126:
			var b [2]byte
			io.ReadFull(br, b[:])
			n = uint64(binary.BigEndian.Uint16(b[:]))
		case 127:
			var b [8]byte
			io.ReadFull(br, b[:])
			n = binary.BigEndian.Uint64(b[:])
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(br, payload); err != nil {
			return 0
		}
		if h[0]&0x0f == 0x8 && n >= 2 {
			return int(binary.BigEndian.Uint16(payload))
		}
	}
}

// A client that talks at once, while its replay is read from the store, still
// gets the system frame first.
func TestSystemFrameFirst(t *testing.T) {
	cfg := noLimit()
	cfg.ReplayLimit = 2000 // since=0 then reaches below the in-memory tail
	env := chattest.Start(t, cfg)
	a := env.DevLogin("writer")
	c := env.Dial(a, "room=first")
	c.NextOfType("system")
	c.Discard()
	for i := 0; i < 1100; i++ { // more than the in-memory tail: replay from the store
		_ = c.Conn.WriteMessage(gws.OpcodeText, fmt.Appendf(nil, `{"text":true,"content":"m%d"}`, i))
		for i%100 == 99 && c.Received() < int64(i+2) { // in steps, within the in-flight bound
			time.Sleep(time.Millisecond)
		}
	}
	deadline := time.Now().Add(chattest.Wait)
	for c.Received() < 1101 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of 1100 messages came back", c.Received()-1)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := 0; i < 10; i++ {
		r := env.Dial(a, "room=first&since=0")
		r.SendRaw(gws.OpcodeText, []byte("not json"))
		if m := r.Next(); m["type"] != "system" {
			t.Fatalf("attempt %d: first frame %v, want the system frame", i, m)
		}
		_ = r.Conn.WriteClose(1000, nil)
	}
}

// A close frame gws writes itself (here 1009) still goes out long after the
// connection's last message: no stale write deadline is left on the socket.
func TestLateCloseFrame(t *testing.T) {
	cfg := noLimit()
	cfg.WriteTimeout = 200 * time.Millisecond
	env := chattest.Start(t, cfg)
	c := env.Dial(env.DevLogin("late"), "")
	c.NextOfType("system")
	time.Sleep(3 * cfg.WriteTimeout) // well past any deadline the writer set
	_ = c.Conn.WriteMessage(gws.OpcodeText, []byte(`{"text":true,"content":"`+strings.Repeat("x", 65<<10)+`"}`))
	if code := c.Closed(); code != 1009 {
		t.Errorf("close code %d, want 1009", code)
	}
}
