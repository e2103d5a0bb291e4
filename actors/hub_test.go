package actors

import (
	"testing"
	"time"

	"github.com/pandachat/pandachat/persistence"
)

// An empty room stops after its idle period; the next join starts a fresh
// one that continues the ids from the store.
func TestIdleRoomStops(t *testing.T) {
	store := persistence.NewMemory()
	hub := NewHub(Options{Store: store, IdleRoom: 50 * time.Millisecond, Rate: Rate{Off: true}})
	defer hub.Shutdown(5 * time.Second)

	sink := &countSink{}
	c := connect(t, hub, ConnSpec{UID: "u1", NickName: "n", Room: "quiet", Sink: sink})
	waitFor(t, func() bool { return sink.frames.Load() == 1 }) // system frame
	c.Receive([]byte(`{"text":true,"content":"one"}`), false)
	waitFor(t, func() bool { return sink.frames.Load() == 2 })
	if hub.Rooms() != 1 {
		t.Fatalf("rooms = %d, want 1", hub.Rooms())
	}
	c.Closed()
	waitFor(t, func() bool { return hub.Rooms() == 0 })

	sink2 := &countSink{}
	c2 := connect(t, hub, ConnSpec{UID: "u2", NickName: "m", Room: "quiet", Sink: sink2})
	waitFor(t, func() bool { return sink2.frames.Load() == 1 })
	c2.Receive([]byte(`{"text":true,"content":"two"}`), false)
	waitFor(t, func() bool { return sink2.frames.Load() == 2 })
	if last, _ := store.LastID("quiet"); last != 2 {
		t.Errorf("last id after the room restarted = %d, want 2", last)
	}
}

// A room with members does not stop, however long it is quiet.
func TestBusyRoomStays(t *testing.T) {
	hub := NewHub(Options{Store: persistence.NewMemory(), IdleRoom: 20 * time.Millisecond})
	defer hub.Shutdown(5 * time.Second)
	sink := &countSink{}
	connect(t, hub, ConnSpec{UID: "u1", Room: "kept", Sink: sink})
	waitFor(t, func() bool { return sink.frames.Load() == 1 })
	time.Sleep(200 * time.Millisecond) // ten idle periods
	if n := hub.Rooms(); n != 1 {
		t.Errorf("rooms = %d, want 1: a room with a member stopped", n)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
