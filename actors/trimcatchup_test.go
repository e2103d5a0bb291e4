package actors

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pandachat/pandachat/persistence"
)

// slowTrim holds its first TrimMessages until release is closed.
type slowTrim struct {
	persistence.Store
	once             sync.Once
	entered, release chan struct{}
}

func (s *slowTrim) TrimMessages(room string, keepFrom uint64) (int, error) {
	first := false
	s.once.Do(func() { first = true })
	if first {
		close(s.entered)
		<-s.release
	}
	return s.Store.TrimMessages(room, keepFrom)
}

// Messages stored while a trim runs are trimmed as soon as it ends, not at
// the next post: a room that goes quiet during a trim still comes down to
// exactly its retention.
func TestTrimCatchesUp(t *testing.T) {
	st := &slowTrim{Store: badger(t), entered: make(chan struct{}), release: make(chan struct{})}
	released := false
	defer func() {
		if !released {
			close(st.release)
		}
	}()
	hub := NewHub(Options{Store: st, Rate: Rate{Off: true}, Retention: 5}) // steps of 1
	defer hub.Shutdown(5 * time.Second)
	a := &captureSink{}
	c := connect(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: a})
	exactly(t, a, 1)
	post := func(from, to int) {
		for i := from; i <= to; i++ {
			c.Receive(text(fmt.Sprint(i)), false)
			exactly(t, a, i+1)
		}
	}
	post(1, 6)
	within(t, st.entered) // the trim to 2..6 runs
	post(7, 9)            // stored meanwhile: 5..9 is what to keep
	close(st.release)
	released = true
	for deadline := time.Now().Add(10 * time.Second); oldest(t, st, "r") != 5; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("oldest id %d after the trim ended, want 5: what was stored during it was not trimmed", oldest(t, st, "r"))
		}
	}
	if got := ids(a.all()); !sameIDs(got, seq(1, 9)) {
		t.Errorf("ids %v, want 1..9", got)
	}
}
