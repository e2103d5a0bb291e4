package actors

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/pandachat/pandachat/persistence"
	"github.com/pandachat/pandachat/protocol"
)

// get finds exactly the ids the tail holds, wrapped or not, and set changes
// one in place.
func TestTailGet(t *testing.T) {
	var empty tail = newTail(3)
	if _, ok := empty.get(1); ok {
		t.Error("an empty tail has id 1")
	}
	for pushed, want := range map[int]string{2: "[1 2]", 5: "[3 4 5]", 6: "[4 5 6]"} {
		tl := newTail(3)
		for i := 1; i <= pushed; i++ {
			tl.push(tailMsg{id: uint64(i), uid: fmt.Sprint("u", i)})
		}
		var held []uint64
		for id := uint64(0); id <= 8; id++ {
			if m, ok := tl.get(id); ok {
				if m.id != id || m.uid != fmt.Sprint("u", id) {
					t.Errorf("pushed %d: get(%d) = %+v", pushed, id, m)
				}
				held = append(held, id)
			}
		}
		if fmt.Sprint(held) != want {
			t.Errorf("pushed %d: get finds %v, want %s", pushed, held, want)
		}
		for id := uint64(0); id <= 8; id++ { // set every id: only the held ones change, each its own
			tl.set(id, fmt.Append(nil, "s", id))
		}
		for _, id := range held {
			if m, _ := tl.get(id); string(m.data) != fmt.Sprint("s", id) {
				t.Errorf("pushed %d: after set, get(%d) has %q", pushed, id, m.data)
			}
		}
	}
}

// LiveRooms lists the rooms where the user has a connection open now; the
// last connection of a session that closes no longer stands for it, the
// others still do: ending the session closes them.
func TestLiveRoomsAndSessions(t *testing.T) {
	hub := NewHub(Options{Store: persistence.NewMemory()})
	defer hub.Shutdown(5 * time.Second)
	w := &captureSink{} // sees each leave in r1 after the users actor had its release
	connect(t, hub, ConnSpec{UID: "uw", Room: "r1", Sink: w, Presence: true})
	frames(t, w, 1)
	n := 1
	open := func(room string) (*Conn, *captureSink) {
		s := &captureSink{}
		c := connectJoined(t, hub, ConnSpec{UID: "ua", SessionID: "s", Room: room, Sink: s})
		if room == "r1" {
			n++
			frames(t, w, n)
		}
		return c, s
	}
	live := func(want string) {
		t.Helper()
		rooms, err := hub.LiveRooms("ua")
		var names []string
		for r, ok := range rooms {
			if ok {
				names = append(names, r)
			}
		}
		slices.Sort(names)
		if err != nil || fmt.Sprint(names) != want {
			t.Errorf("live rooms %v (%v), want %s", names, err, want)
		}
	}
	c1, _ := open("r1")
	c2, _ := open("r1")
	_, s3 := open("r2")
	live("[r1 r2]")
	c1.Closed()
	n++
	frames(t, w, n)
	live("[r1 r2]")
	c2.Closed()
	n++
	frames(t, w, n)
	live("[r2]")
	hub.EndSession("s")
	waitFor(t, func() bool { f := s3.all(); return f[len(f)-1]["close"] == float64(protocol.ClosePolicy) })
}

// A user cannot refill its rate budget by closing its sockets and opening a
// new one: its state is kept until the budget is full again.
func TestRateBudgetSurvivesReconnects(t *testing.T) {
	hub := NewHub(Options{Store: persistence.NewMemory(), Rate: Rate{Messages: 2, Per: time.Hour}})
	defer hub.Shutdown(5 * time.Second)
	a := &captureSink{}
	ca := connectJoined(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: a})
	ca.Receive(text("one"), false)
	ca.Receive(text("two"), false)
	frames(t, a, 3)
	ca.Closed()
	waitFor(t, func() bool { rooms, err := hub.LiveRooms("ua"); return err == nil && len(rooms) == 0 })
	b := &captureSink{}
	cb := connectJoined(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: b})
	cb.Receive(text("three"), false)
	if f := frames(t, b, 2)[1]; f["error"] != protocol.ErrRateLimited {
		t.Errorf("a third message in the hour after reconnecting: %v; want ERR_RATE_LIMITED", f)
	}
}
