package actors

import (
	"fmt"
	"testing"
	"time"

	"github.com/pandachat/pandachat/internal/faultstore"
)

// Frames that come before the room has answered the join wait in the
// connection, within the same in-flight bound (256 by default): the 257th
// waits until the room answers, then all are stored in order.
func TestFramesBeforeTheJoinAreBounded(t *testing.T) {
	fs := faultstore.New(badger(t))
	fs.StallReads() // the room's start reads its last id: the join waits
	hub := NewHub(Options{Store: fs, Rate: Rate{Off: true}})
	defer hub.Shutdown(5 * time.Second)
	defer fs.Clear()
	a := &captureSink{}
	c := connect(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: a})
	within(t, fs.Stalled())
	const bound = 256
	returned := make(chan int, bound+1)
	go func() {
		for i := 1; i <= bound+1; i++ {
			c.Receive(text(fmt.Sprint(i)), false)
			returned <- i
		}
	}()
	for range bound {
		within(t, returned)
	}
	select {
	case <-returned:
		t.Fatalf("frame %d was taken with %d waiting for the join", bound+1, bound)
	case <-time.After(200 * time.Millisecond):
	}
	if n := len(a.all()); n != 0 {
		t.Fatalf("%d frames sent before the join was answered", n)
	}
	fs.Release()
	within(t, returned)
	waitFor(t, func() bool { return len(ids(a.all())) == bound+1 })
	if got := ids(a.all()); !sameIDs(got, seq(1, bound+1)) {
		t.Errorf("ids %v, want 1..%d", got, bound+1)
	}
	waitFor(t, func() bool { return c.InFlight() == 0 })
}
