package actors

import (
	"fmt"
	"testing"
	"time"

	"github.com/pandachat/pandachat/persistence"
)

// A frame that waits for the join is posted to the room the moment the join
// is answered: the conn must know its room by then, however the registry's
// and the room's messages interleave (a nil room here panicked the conn).
func TestPostRightAfterJoin(t *testing.T) {
	hub := NewHub(Options{Store: persistence.NewMemory(), Rate: Rate{Off: true}})
	defer hub.Shutdown(5 * time.Second)
	first := &countSink{}
	connect(t, hub, ConnSpec{UID: "u0", Room: "lobby", Sink: first}) // keeps the room warm: joins are answered at once
	waitFor(t, func() bool { return first.frames.Load() == 1 })
	for i := 0; i < 300; i++ {
		sink := &captureSink{}
		c := connect(t, hub, ConnSpec{UID: fmt.Sprint("u", i+1), Room: "lobby", Sink: sink})
		c.Receive([]byte(fmt.Sprintf(`{"text":true,"content":"x","cid":"%d"}`, i)), false)
		waitFor(t, func() bool {
			for _, m := range sink.all() {
				if m["close"] != nil {
					t.Fatalf("join %d: closed with %v before its echo", i, m["close"])
				}
				if m["cid"] == fmt.Sprint(i) {
					return true
				}
			}
			return false
		})
		c.Closed()
	}
}
