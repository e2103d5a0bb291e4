package actors

import (
	"testing"
	"time"

	"github.com/pandachat/pandachat/persistence"
)

// A connection that leaves marks the room read up to what it was sent, if it
// was sent anything since it joined; one that saw nothing new leaves an older
// read position as it was.
func TestReadPositionOnLeave(t *testing.T) {
	st := badger(t)
	hub := NewHub(Options{Store: st, Rate: Rate{Off: true}})
	stopped := false
	defer func() {
		if !stopped {
			hub.Shutdown(5 * time.Second)
		}
	}()
	v := &captureSink{}
	cv := connectJoined(t, hub, ConnSpec{UID: "uv", Room: "r", Sink: v, Presence: true})
	for range 10 {
		cv.Receive(text("m"), false)
	}
	frames(t, v, 11)
	if err := st.MarkRead([]persistence.ReadMark{{UID: "ua", Room: "r", ID: 5}}); err != nil {
		t.Fatal(err)
	}
	n := 11
	// sync waits for a's leave, then for the read positions it queued.
	sync := func() {
		t.Helper()
		waitFor(t, func() bool { f := v.all(); return f[len(f)-1]["event"] == "leave" })
		cv.Receive(text("sync"), false) // stored behind the room's write of read positions
		n += 3                          // join, leave, echo
		frames(t, v, n)
	}
	position := func() uint64 {
		t.Helper()
		id, err := st.ReadPosition("ua", "r")
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	a := &captureSink{}
	connect(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: a}).Closed()
	sync()
	if got := position(); got != 5 {
		t.Errorf("after a connection that saw nothing new: read position %d, want 5", got)
	}
	a = &captureSink{}
	ca := connectJoined(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: a})
	cv.Receive(text("new"), false) // id 12
	frames(t, a, 2)
	n++
	ca.Closed()
	sync()
	if got := position(); got != 12 {
		t.Errorf("after a connection that was sent id 12: read position %d, want 12", got)
	}

	// At shutdown the same: a was sent id 14, b nothing since it joined.
	if err := st.MarkRead([]persistence.ReadMark{{UID: "ub", Room: "r", ID: 3}}); err != nil {
		t.Fatal(err)
	}
	a = &captureSink{}
	connect(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: a})
	frames(t, a, 1)
	cv.Receive(text("last"), false) // id 14
	frames(t, a, 2)
	b := &captureSink{}
	connect(t, hub, ConnSpec{UID: "ub", Room: "r", Sink: b})
	frames(t, b, 1)
	stopped = true
	hub.Shutdown(5 * time.Second)
	if got := position(); got != 14 {
		t.Errorf("a at shutdown: read position %d, want 14", got)
	}
	if got, err := st.ReadPosition("ub", "r"); err != nil || got != 3 {
		t.Errorf("b at shutdown: read position %d (%v), want 3", got, err)
	}
}

// A connection whose socket closed marks read only what the room handed it
// while the socket was open: a message stored between the close and the
// room's hearing of the leave stays unread.
func TestReadPositionStopsWhereTheSocketClosed(t *testing.T) {
	stalled, release := make(chan struct{}), make(chan struct{})
	hs := &hookStore{Store: badger(t)}
	hs.append = func(call int, room string, msgs []persistence.Message, inner persistence.Store) error {
		if call == 2 { // the second message: the room waits here while a's socket closes
			close(stalled)
			<-release
		}
		return inner.AppendMessages(room, msgs)
	}
	hub := NewHub(Options{Store: hs, Rate: Rate{Off: true}})
	defer hub.Shutdown(5 * time.Second)
	v, a := &captureSink{}, &captureSink{}
	cv := connectJoined(t, hub, ConnSpec{UID: "uv", Room: "r", Sink: v})
	ca := connectJoined(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: a})
	cv.Receive(text("one"), false) // id 1, read by a
	frames(t, a, 2)
	cv.Receive(text("two"), false) // id 2, stored after a's socket closed
	within(t, stalled)
	ca.Closed()
	close(release)
	frames(t, v, 3)
	var got uint64
	waitFor(t, func() bool { got, _ = hs.ReadPosition("ua", "r"); return got != 0 })
	if got != 1 {
		t.Errorf("read position %d after a's socket closed before id 2 was stored; want 1", got)
	}
}
