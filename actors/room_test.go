package actors

import (
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pandachat/pandachat/persistence"
)

// captureSink keeps every frame's payload, decoded.
type captureSink struct {
	mu     sync.Mutex
	frames []map[string]any
	closed bool
}

func (s *captureSink) Send(frames ...[]byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	for _, b := range frames {
		s.decode(b)
	}
	return true
}

func (s *captureSink) decode(b []byte) {
	for len(b) >= 2 {
		l, h := int(b[1]&0x7f), 2
		if l == 126 {
			l, h = int(b[2])<<8|int(b[3]), 4
		}
		var m map[string]any
		_ = json.Unmarshal(b[h:h+l], &m)
		s.frames = append(s.frames, m)
		b = b[h+l:]
	}
}

// Close is recorded in order with the frames, as {"close": code}, behind
// last; as on a socket, only the first close counts and nothing is sent after it.
func (s *captureSink) Close(code int, _ string, last ...[]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		for _, b := range last {
			s.decode(b)
		}
		s.frames = append(s.frames, map[string]any{"close": float64(code)})
	}
}

func (s *captureSink) all() []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]map[string]any(nil), s.frames...)
}

// When the store refuses a batch, its senders are told and nobody receives
// it; the ids are handed out again, so no id is skipped.
func TestStoreFailureLosesNothing(t *testing.T) {
	bs, err := persistence.OpenBadger(t.TempDir(), persistence.Options{})
	if err != nil {
		t.Fatal(err)
	}
	hub := NewHub(Options{Store: bs, Rate: Rate{Off: true}})
	defer hub.Shutdown(5 * time.Second)
	a, b := &captureSink{}, &captureSink{}
	ca := connect(t, hub, ConnSpec{UID: "ua", NickName: "a", Room: "r", Sink: a})
	waitFor(t, func() bool { return len(a.all()) == 1 })
	connect(t, hub, ConnSpec{UID: "ub", NickName: "b", Room: "r", Sink: b})
	waitFor(t, func() bool { return len(b.all()) == 1 })

	ca.Receive([]byte(`{"text":true,"content":"stored","cid":"1"}`), false)
	waitFor(t, func() bool { return len(b.all()) == 2 })
	if got := b.all()[1]; got["id"] != float64(1) || got["content"] != "stored" {
		t.Fatalf("first message: %v", got)
	}

	if err := bs.Close(); err != nil { // from now on every write fails
		t.Fatal(err)
	}
	ca.Receive([]byte(`{"text":true,"content":"not stored","cid":"2"}`), false)
	waitFor(t, func() bool { return len(a.all()) == 3 })
	if got := a.all()[2]; got["type"] != "error" || got["error"] != "ERR_UNAVAILABLE" || got["cid"] != "2" {
		t.Errorf("sender got %v, want ERR_UNAVAILABLE with its cid", got)
	}
	time.Sleep(50 * time.Millisecond)
	if n := len(b.all()); n != 2 {
		t.Errorf("the other member got %d frames; an unstored message must reach nobody", n)
	}
}

// panickyStore panics on its first write, as a bug in a room's path would.
type panickyStore struct {
	*persistence.Memory
	once sync.Once
}

func (p *panickyStore) AppendMessages(room string, msgs []persistence.Message) error {
	p.once.Do(func() { panic("boom") })
	return p.Memory.AppendMessages(room, msgs)
}

// closeSink records the close code it is given.
type closeSink struct {
	countSink
	code atomic.Int32
}

func (s *closeSink) Close(code int, _ string, _ ...[]byte) { s.code.Store(int32(code)) }

// A room that fails is stopped, not restarted empty: its members are closed
// with 1011 so that they reconnect, and the next join gets a fresh room.
func TestFailedRoomClosesItsMembers(t *testing.T) {
	hub := NewHub(Options{Store: &panickyStore{Memory: persistence.NewMemory()}, Rate: Rate{Off: true}})
	defer hub.Shutdown(5 * time.Second)
	a, b := &closeSink{}, &closeSink{}
	ca := connect(t, hub, ConnSpec{UID: "ua", Room: "fragile", Sink: a})
	waitFor(t, func() bool { return a.frames.Load() == 1 })
	connect(t, hub, ConnSpec{UID: "ub", Room: "fragile", Sink: b})
	waitFor(t, func() bool { return b.frames.Load() == 1 })
	ca.Receive([]byte(`{"text":true,"content":"boom"}`), false)
	waitFor(t, func() bool { return a.code.Load() == 1011 && b.code.Load() == 1011 })
	waitFor(t, func() bool { return hub.Rooms() == 0 })

	c := &closeSink{}
	cc := connect(t, hub, ConnSpec{UID: "uc", Room: "fragile", Sink: c})
	waitFor(t, func() bool { return c.frames.Load() == 1 })
	cc.Receive([]byte(`{"text":true,"content":"after"}`), false)
	waitFor(t, func() bool { return c.frames.Load() == 2 })
}

func connect(tb testing.TB, h *Hub, spec ConnSpec) *Conn {
	tb.Helper()
	c, err := h.Connect(spec)
	if err != nil {
		tb.Fatalf("connect %s: %v", spec.UID, err)
	}
	return c
}
