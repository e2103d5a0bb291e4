package server_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/pandachat/pandachat/internal/faultstore"
	"github.com/pandachat/pandachat/server"
)

// A room that panics while it starts (reading its last id or its tail) is
// stopped for good: the join waiting in it is closed with 1011, and the next
// joins get a fresh room instead of a dead one.
func TestRoomPanicAtStart(t *testing.T) {
	for _, method := range []string{faultstore.LastID, faultstore.MessagesAfter} {
		t.Run(method, func(t *testing.T) {
			env, fs := startFaulty(t, func(c *server.Config) { c.IdleRoom = 20 * time.Millisecond })
			a := env.DevLogin("a")
			c := env.Dial(a, "room=r")
			c.NextOfType("system")
			c.Send(map[string]any{"text": true, "content": "x", "cid": "1"})
			c.NextChat()
			c.Conn.WriteClose(1000, nil)
			c.Closed()
			time.Sleep(300 * time.Millisecond) // the room stops when idle
			fs.PanicOn(method)
			c = env.Dial(a, "room=r&since=0")
			if code := c.Closed(); code != 1011 { // fails after 10 s when the join is never answered
				t.Errorf("the join queued in the crashing room: close %d, want 1011", code)
			}
			for i := 0; i < 3; i++ {
				c := env.Dial(a, "room=r&since=0")
				m, code, closed := c.NextOrClose()
				if closed {
					t.Errorf("join %d after the crash: closed with %d, want a fresh room", i, code)
					continue
				}
				if m["type"] != "system" {
					t.Errorf("join %d after the crash got %v first, want the system frame", i, m)
				}
				c.Conn.WriteClose(1000, nil)
			}
		})
	}
}

// Under -race: a room's receive timeout fires on a timer goroutine while the
// room handles a join.
func TestRoomIdleTimerRace(t *testing.T) {
	env, _ := startFaulty(t, func(c *server.Config) { c.IdleRoom = 2 * time.Millisecond })
	a := env.DevLogin("a")
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		c := env.Dial(a, "room=idle")
		c.NextOfType("system")
		c.Conn.WriteClose(1000, nil)
		c.Closed()
		time.Sleep(time.Duration(time.Now().UnixNano()%3) * time.Millisecond)
	}
}

// A room that could not read its last id when it started serves joins with an
// empty replay: the joiner's since..last are never sent. Either the joiner is
// closed with 1011 (it comes back with since) or it gets its replay.
func TestReplayFromARoomThatCannotReadItsStore(t *testing.T) {
	env, fs := startFaulty(t, func(c *server.Config) { c.IdleRoom = 20 * time.Millisecond })
	a, b := env.DevLogin("a"), env.DevLogin("b")
	ca := env.Dial(a, "room=r")
	ca.NextOfType("system")
	for i := 0; i < 5; i++ {
		ca.Send(map[string]any{"text": true, "content": "x", "cid": fmt.Sprint(i)})
		ca.NextChat()
	}
	ca.Conn.WriteClose(1000, nil)
	ca.Closed()
	time.Sleep(300 * time.Millisecond) // the room stops when idle
	fs.FailReads(1)                    // its next start cannot read its last id
	cb := env.Dial(b, "room=r&since=2")
	for attempt := 0; ; attempt++ {
		m, code, closed := cb.NextOrClose()
		if !closed {
			if m["type"] != "system" {
				t.Fatalf("first frame %v, want the system frame", m)
			}
			break
		}
		if code != 1011 {
			t.Fatalf("closed with %d, want 1011 or a replay", code)
		}
		if attempt == 5 {
			t.Fatal("the joiner is still closed with 1011 after the store reads again")
		}
		time.Sleep(100 * time.Millisecond) // the client's reconnect delay
		cb = env.Dial(b, "room=r&since=2")
	}
	ca = env.Dial(a, "room=r&since=5")
	ca.NextOfType("system")
	ca.Send(map[string]any{"text": true, "content": "y", "cid": "y"})
	if m := cb.NextChat(); m.ID != 3 {
		t.Fatalf("joined with since=2, first chat frame is id %d (%s), want 3", m.ID, m)
	}
}
