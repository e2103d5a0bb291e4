package server_test

import (
	"fmt"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lxzan/gws"

	"github.com/pandachat/pandachat/actors"
	"github.com/pandachat/pandachat/internal/chattest"
)

// One more socket than --max-conns-per-user is refused with an error frame and
// 1008; the user's other sockets go on, and a closed one frees its slot.
func TestConnectionsPerUserCap(t *testing.T) {
	t.Parallel()
	cfg := noLimit()
	cfg.MaxConnsPerUser = 3
	env := chattest.Start(t, cfg)
	s := env.DevLogin("many")
	var open []*chattest.Client
	for i := 0; i < 3; i++ {
		c := env.Dial(s, "")
		c.NextOfType("system")
		open = append(open, c)
	}
	extra := env.Dial(s, "")
	if m := extra.NextChat(); m.Error != "ERR_TOO_MANY_CONNECTIONS" {
		t.Fatalf("fourth socket got %+v, want ERR_TOO_MANY_CONNECTIONS", m)
	}
	if code := extra.Closed(); code != 1008 {
		t.Errorf("fourth socket closed with %d, want 1008", code)
	}
	open[0].Send(map[string]any{"text": true, "content": "still here"})
	for _, c := range open {
		if m := c.NextChat(); m.Content != "still here" {
			t.Errorf("an admitted socket got %+v", m)
		}
	}
	other := env.Dial(env.DevLogin("someone else"), "") // the cap is per user
	other.NextOfType("system")
	_ = open[2].Conn.WriteClose(1000, nil)
	open[2].Closed()
	deadline := time.Now().Add(chattest.Wait)
	for {
		c := env.Dial(s, "")
		if m := c.NextChat(); m.Type == "system" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a closed socket did not free its slot")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A socket does not outlive its session: at expiry it gets the invalid-session
// frame and 1008 (a post after that is refused: actors' TestEndedSession…).
func TestSessionExpiryClosesSockets(t *testing.T) {
	t.Parallel()
	cfg := noLimit()
	cfg.SessionTTL = 2 * time.Second
	env := chattest.Start(t, cfg)
	s := env.DevLogin("brief")
	c := env.Dial(s, "")
	c.NextOfType("system")
	c.Send(map[string]any{"text": true, "content": "before"})
	if m := c.NextChat(); m.Content != "before" {
		t.Fatalf("got %+v", m)
	}
	if m := c.Next(); m["error"] != "ERR_INVALID_SESSION" {
		t.Fatalf("at expiry got %v, want ERR_INVALID_SESSION", m)
	}
	if code := c.Closed(); code != 1008 {
		t.Errorf("closed with %d, want 1008", code)
	}
	if code := env.Do(s, "GET", "/me", nil, nil); code != 401 {
		t.Errorf("/me after expiry: HTTP %d, want 401", code)
	}
}

// A sender faster than the server (rate limit off) is slowed down, not closed:
// every one of its messages reaches every member.
func TestFastSenderIsSlowedNotClosed(t *testing.T) {
	t.Parallel()
	env := chattest.Start(t, noLimit())
	var readers []*chattest.Client
	for i := 0; i < 3; i++ {
		r := env.Dial(env.DevLogin(fmt.Sprint("reader", i)), "")
		r.NextOfType("system")
		r.Discard()
		readers = append(readers, r)
	}
	sender := env.Dial(env.DevLogin("fast"), "")
	sender.NextOfType("system")
	sender.Discard()
	const n = 5000
	frame := []byte(`{"text":true,"content":"` + strings.Repeat("f", 100) + `"}`)
	for i := 0; i < n; i++ {
		if err := sender.Conn.WriteMessage(gws.OpcodeText, frame); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, c := range append(readers, sender) {
		for c.Received() < 1+n && time.Now().Before(deadline) && !c.IsClosed() { // the system frame, then n
			time.Sleep(10 * time.Millisecond)
		}
		if got := c.Received() - 1; got != n || c.IsClosed() {
			t.Errorf("a member got %d of %d messages (closed: %v)", got, n, c.IsClosed())
		}
	}
}

// A client that re-sends its unconfirmed message with the same cid after a
// reconnect gets the original echo; the history holds the message once.
func TestResendAfterReconnect(t *testing.T) {
	t.Parallel()
	env := chattest.Start(t, noLimit())
	s := env.DevLogin("resender")
	c := env.Dial(s, "room=resend")
	c.NextOfType("system")
	c.Send(map[string]any{"text": true, "content": "once", "cid": "c-1"})
	first := c.NextChat()
	_ = c.Conn.WriteClose(1000, nil)
	c.Closed()
	c2 := env.Dial(s, fmt.Sprintf("room=resend&since=%d", first.ID))
	c2.NextOfType("system")
	c2.Send(map[string]any{"text": true, "content": "once", "cid": "c-1"})
	again := c2.NextChat()
	if again.Type != "user" || again.ID != first.ID || again.CID != "c-1" {
		t.Fatalf("re-send got %+v, want the echo of id %d", again, first.ID)
	}
	var hist []map[string]any
	if code := env.Do(s, "GET", "/history?room=resend&limit=10", nil, &hist); code != 200 {
		t.Fatalf("history: HTTP %d", code)
	}
	if len(hist) != 1 {
		t.Errorf("history holds %d messages, want 1", len(hist))
	}
}

// One user opening every socket it may, most of them never reading, while the
// others flood a room with the rate limit off: the server's heap stays bounded
// (frames are shared by the queues, slow readers are dropped), far below the
// hundreds of times the sent bytes that private copies per queue would cost.
func TestOneUserCannotAmplifyMemory(t *testing.T) {
	cfg := noLimit()
	cfg.MaxConnsPerUser = 16
	env := chattest.Start(t, cfg)
	s := env.DevLogin("amplifier")
	u := strings.Replace(env.URL, "http", "ws", 1) + "/ws?room=amp&X-WX-Id=" + url.QueryEscape(s.ID) + "&X-WX-Skey=" + url.QueryEscape(s.Skey)
	var silent []*gws.Conn
	for i := 0; i < 12; i++ { // upgraded, then never read from
		conn, _, err := gws.NewClient(new(gws.BuiltinEventHandler), &gws.ClientOption{Addr: u, RequestHeader: http.Header{}})
		if err != nil {
			t.Fatal(err)
		}
		silent = append(silent, conn)
	}
	defer runtime.KeepAlive(silent)
	var senders []*chattest.Client
	for i := 0; i < 4; i++ {
		c := env.Dial(s, "room=amp")
		c.NextOfType("system")
		c.Discard()
		senders = append(senders, c)
	}
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak atomic.Uint64
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		var m runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
		}
	}()
	body := []byte(`{"text":true,"content":"` + strings.Repeat("a", 1000) + `"}`)
	const each = 5000 // 4 × 5 000 × 1 KB = 20 MB sent
	var wg sync.WaitGroup
	for _, c := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if c.Conn.WriteMessage(gws.OpcodeText, body) != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, c := range senders {
		deadline := time.Now().Add(60 * time.Second)
		for c.Received() < 1+4*each && time.Now().Before(deadline) && !c.IsClosed() { // the system frame, then all
			time.Sleep(20 * time.Millisecond)
		}
	}
	close(stop)
	sampler.Wait()
	grew := int64(peak.Load()) - int64(base.HeapInuse)
	t.Logf("20 MB sent; heap in use grew by at most %d MiB", grew>>20)
	if grew > 256<<20 {
		t.Errorf("heap grew by %d MiB while one user sent 20 MB; memory must not grow with messages × members", grew>>20)
	}
	for i, c := range senders {
		if got := c.Received() - 1; got != 4*each {
			t.Errorf("reading sender %d got %d of %d messages", i, got, 4*each)
		}
	}
}

// A user that opens sockets faster than --connect-rate is refused with
// ERR_RATE_LIMITED and 1008 (each join and leave is a presence frame to the
// room); other users are not, and the budget refills with time.
func TestConnectRatePerUser(t *testing.T) {
	t.Parallel()
	cfg := noLimit()
	cfg.ConnectRate = actors.Rate{Messages: 5, Per: 500 * time.Millisecond}
	env := chattest.Start(t, cfg)
	s := env.DevLogin("churn")
	for i := 0; i < 5; i++ { // open and close: the cap on open sockets is not what stops it
		c := env.Dial(s, "room=r&presence=1")
		c.NextOfType("system")
		_ = c.Conn.WriteClose(1000, nil)
		c.Closed()
	}
	extra := env.Dial(s, "room=r")
	if m := extra.NextChat(); m.Error != "ERR_RATE_LIMITED" {
		t.Fatalf("sixth socket in a burst of five got %+v, want ERR_RATE_LIMITED", m)
	}
	if code := extra.Closed(); code != 1008 {
		t.Errorf("sixth socket closed with %d, want 1008", code)
	}
	env.Dial(env.DevLogin("someone else"), "room=r").NextOfType("system") // per user
	time.Sleep(150 * time.Millisecond)                                    // one new socket per 100 ms
	env.Dial(s, "room=r").NextOfType("system")
}
