package actors

import (
	"testing"
	"time"

	"github.com/pandachat/pandachat/internal/faultstore"
	"github.com/pandachat/pandachat/persistence"
)

// A room that fails in its start (the store panics) is stopped cleanly: its
// joiner is closed with 1011 and the next join gets a fresh room that works.
func TestRoomFailsInItsStart(t *testing.T) {
	fs := faultstore.New(persistence.NewMemory())
	hub := NewHub(Options{Store: fs, Rate: Rate{Off: true}})
	defer hub.Shutdown(5 * time.Second)
	fs.PanicOn(faultstore.LastID)
	a := &captureSink{}
	connect(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: a})
	if got := exactly(t, a, 1)[0]; got["close"] != float64(1011) {
		t.Errorf("joiner of a room that failed: %v", got)
	}
	waitFor(t, func() bool { return hub.Rooms() == 0 })
	b := &captureSink{}
	cb := connect(t, hub, ConnSpec{UID: "ub", Room: "r", Sink: b})
	exactly(t, b, 1)
	cb.Receive(text("works"), false)
	checkIDs(t, "then", exactly(t, b, 2)[1:], "user:1:works")
}
