package actors

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pandachat/pandachat/persistence"
	"github.com/pandachat/pandachat/protocol"
)

func TestParseRate(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"20/10s", "20/10s"}, {"5/1s", "5/1s"}, {"1/1ms", "1/1ms"}, {"off", "off"}, {"OFF", "off"},
	} {
		r, err := ParseRate(tc.in)
		if err != nil || r.String() != tc.want {
			t.Errorf("ParseRate(%q) = %v, %v; want %s", tc.in, r, err, tc.want)
		}
	}
	for _, bad := range []string{"", "0/1s", "-1/1s", "x/1s", "5", "5/", "5/0s", "5/-1s", "5/x", "of"} {
		if r, err := ParseRate(bad); err == nil {
			t.Errorf("ParseRate(%q) = %v, want an error", bad, r)
		}
	}
	// A rate without a count or a period is the default.
	for _, r := range []Rate{{}, {Messages: 5}, {Per: time.Second}, {Messages: -1, Per: time.Second}, {Messages: 5, Per: -time.Second}} {
		if got := r.String(); got != "20/10s" {
			t.Errorf("%#v.String() = %s, want the default 20/10s", r, got)
		}
	}
}

// oldest is the first id the store still holds for room (0: none).
func oldest(t *testing.T, st persistence.Store, room string) uint64 {
	t.Helper()
	msgs, err := st.MessagesAfter(room, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) == 0 {
		return 0
	}
	return msgs[0].ID
}

// Retention keeps exactly the newest N messages, trimming in steps of N/10+1:
// posted one at a time, the oldest id kept follows the steps exactly. A
// negative retention keeps everything.
func TestRetentionSteps(t *testing.T) {
	for _, keep := range []int{5, 20, -1} {
		st := badger(t)
		hub := NewHub(Options{Store: st, Rate: Rate{Off: true}, Retention: keep})
		t.Cleanup(func() { hub.Shutdown(5 * time.Second) })
		a := &captureSink{}
		c := connect(t, hub, ConnSpec{UID: "ua", Room: "kept", Sink: a})
		waitFor(t, func() bool { return len(a.all()) == 1 })
		var trimmedTo uint64 // ids below it are gone, as the room's steps have it
		for id := uint64(1); id <= 60; id++ {
			c.Receive(text("m"), false)
			waitFor(t, func() bool { return len(a.all()) == int(id)+1 })
			if k := uint64(keep); keep > 0 && id > k {
				if keepFrom := id - k + 1; keepFrom-trimmedTo >= k/10+1 {
					trimmedTo = keepFrom
				}
			}
			// Each trim is waited for before the next post: the steps are exact.
			want := max(trimmedTo, 1)
			deadline := time.Now().Add(10 * time.Second)
			for oldest(t, st, "kept") != want {
				if time.Now().After(deadline) {
					t.Fatalf("retention %d, after id %d: oldest id %d, want %d", keep, id, oldest(t, st, "kept"), want)
				}
				time.Sleep(2 * time.Millisecond)
			}
		}
	}
}

// pingSink counts the pings it is sent, notes when the first came, and can turn full.
type pingSink struct {
	mu     sync.Mutex
	pings  int
	first  time.Time
	full   bool
	code   int
	closed time.Time
}

func (s *pingSink) Send(frames ...[]byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.full {
		return false
	}
	for _, f := range frames {
		if f[0] == protocol.PingFrame[0] {
			if s.pings++; s.pings == 1 {
				s.first = time.Now()
			}
		}
	}
	return true
}

func (s *pingSink) Close(code int, _ string, _ ...[]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.code == 0 {
		s.code, s.closed = code, time.Now()
	}
}

func (s *pingSink) state() (pings, code int, closed time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pings, s.code, s.closed
}

func (s *pingSink) firstPing() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.first
}

// A room pings its members every PingInterval; one whose queue is full when
// the ping comes is a slow consumer: closed with 1013, gone from the room.
func TestRoomPingsItsMembers(t *testing.T) {
	hub := NewHub(Options{Store: persistence.NewMemory(), PingInterval: 10 * time.Millisecond})
	defer hub.Shutdown(5 * time.Second)
	a, b := &pingSink{}, &pingSink{}
	connect(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: a})
	connect(t, hub, ConnSpec{UID: "ub", Room: "r", Sink: b, Presence: true})
	waitFor(t, func() bool { p, _, _ := a.state(); q, _, _ := b.state(); return p >= 3 && q >= 3 })
	a.mu.Lock()
	a.full = true
	a.mu.Unlock()
	waitFor(t, func() bool { _, code, _ := a.state(); return code != 0 })
	if _, code, _ := a.state(); code != protocol.CloseSlowConsumer {
		t.Fatalf("a full member was closed with %d, want %d", code, protocol.CloseSlowConsumer)
	}
	// b goes on being pinged; it was not closed.
	p, _, _ := b.state()
	waitFor(t, func() bool { q, _, _ := b.state(); return q >= p+3 })
	if _, code, _ := b.state(); code != 0 {
		t.Fatalf("the other member was closed with %d", code)
	}
}

// Rooms started at the same moment (a restart's reconnects) do not ping all
// at once: each room's first ping comes at its own point of the interval's
// second half, so that no member waits longer than the interval for a ping.
func TestFirstPingsOfRoomsStartedTogetherAreSpread(t *testing.T) {
	const interval, rooms = time.Second, 20
	hub := NewHub(Options{Store: persistence.NewMemory(), PingInterval: interval})
	defer hub.Shutdown(5 * time.Second)
	start := time.Now()
	sinks := make([]*pingSink, rooms)
	for i := range sinks {
		sinks[i] = &pingSink{}
		connect(t, hub, ConnSpec{UID: fmt.Sprint("u", i), Room: fmt.Sprint("r", i), Sink: sinks[i]})
	}
	waitFor(t, func() bool {
		for _, s := range sinks {
			if s.firstPing().IsZero() {
				return false
			}
		}
		return true
	})
	lo, hi := time.Duration(1<<62), time.Duration(0)
	for _, s := range sinks {
		d := s.firstPing().Sub(start)
		lo, hi = min(lo, d), max(hi, d)
	}
	if lo < interval/2 || hi > interval+200*time.Millisecond {
		t.Errorf("the rooms' first pings came %v to %v after they started; want within the second half of the interval, %v", lo, hi, interval)
	}
	if hi-lo < interval/8 {
		t.Errorf("the first pings of %d rooms started together came within %v of each other (%v to %v): not spread over the interval", rooms, hi-lo, lo, hi)
	}
}

// A socket is closed when its session ends, not before: at the expiry it was
// opened with, or at the later one the store says the session was renewed to.
func TestSessionExpiryClosesTheSocket(t *testing.T) {
	st := persistence.NewMemory()
	hub := NewHub(Options{Store: st})
	defer hub.Shutdown(5 * time.Second)
	now := time.Now()
	short := now.Add(50 * time.Millisecond)
	renewed := now.Add(250 * time.Millisecond)
	if err := st.PutSession(persistence.Session{ID: "renewed", UID: "ub", Expires: renewed}); err != nil {
		t.Fatal(err)
	}
	a, b, c := &pingSink{}, &pingSink{}, &captureSink{}
	connect(t, hub, ConnSpec{UID: "ua", SessionID: "gone", Expires: short, Room: "r", Sink: a})
	connect(t, hub, ConnSpec{UID: "ub", SessionID: "renewed", Expires: short, Room: "r", Sink: b})
	connect(t, hub, ConnSpec{UID: "uc", SessionID: "gone2", Expires: short, Room: "r2", Sink: c})
	waitFor(t, func() bool {
		_, ca, _ := a.state()
		_, cb, _ := b.state()
		return ca != 0 && cb != 0
	})
	for _, s := range []struct {
		name string
		sink *pingSink
		not  time.Time // closed after this
	}{{"expired", a, short}, {"renewed", b, renewed}} {
		if _, code, at := s.sink.state(); code != protocol.ClosePolicy || !at.After(s.not) {
			t.Errorf("%s session: closed with %d at %v, want %d after %v", s.name, code, at.Sub(now), protocol.ClosePolicy, s.not.Sub(now))
		}
	}
	waitFor(t, func() bool { f := c.all(); return len(f) > 0 && f[len(f)-1]["close"] != nil })
	f := c.all()
	if len(f) < 2 || f[len(f)-2]["error"] != protocol.ErrInvalidSession || f[len(f)-1]["close"] != float64(protocol.ClosePolicy) {
		t.Errorf("frames %v; want the session error, then close %d", f, protocol.ClosePolicy)
	}
}

// A room whose last member left waits IdleRoom (30 s unless set) before it
// stops: a reconnect finds it running, with its tail in memory. Unless set,
// members are pinged every 30 s, not constantly.
func TestEmptyRoomWaitsForIdle(t *testing.T) {
	hub := NewHub(Options{Store: persistence.NewMemory()})
	defer hub.Shutdown(5 * time.Second)
	a := &captureSink{}
	c := connect(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: a})
	waitFor(t, func() bool { return len(a.all()) == 1 })
	time.Sleep(100 * time.Millisecond)
	if n := len(a.all()); n != 1 {
		t.Errorf("%d frames within 100 ms of joining, want the system frame alone", n)
	}
	c.Closed()
	time.Sleep(200 * time.Millisecond) // long past a zero idle period
	if n := hub.Rooms(); n != 1 {
		t.Errorf("rooms = %d, want 1: a room stopped before its idle period", n)
	}
}
