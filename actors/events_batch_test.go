package actors

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pandachat/pandachat/persistence"
	"github.com/pandachat/pandachat/protocol"
)

// Reactions queued behind a stalled write are stored in batches of exactly
// maxBatch, as posts are: the one that fills a batch flushes it.
func TestEventBatchCap(t *testing.T) {
	var mu sync.Mutex
	var sizes []int
	stalled, release := make(chan struct{}), make(chan struct{})
	hs := &hookStore{Store: persistence.NewMemory()}
	hs.append = func(call int, room string, msgs []persistence.Message, inner persistence.Store) error {
		mu.Lock()
		sizes = append(sizes, len(msgs))
		mu.Unlock()
		if call == 2 { // the first reaction
			close(stalled)
			<-release
		}
		return inner.AppendMessages(room, msgs)
	}
	in := &inCounter{}
	hub := NewHub(Options{Store: hs, Rate: Rate{Off: true}, MaxInflight: 4096, Observer: in})
	defer hub.Shutdown(5 * time.Second)
	a := &countSink{}
	ca := connect(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: a, V2: true})
	waitFor(t, func() bool { return a.frames.Load() == 1 })
	ca.Receive(text("target"), false)
	waitFor(t, func() bool { return a.frames.Load() == 2 })
	react := []byte(`{"react":1,"emoji":"👍"}`)
	ca.Receive(react, false)
	within(t, stalled)
	const more = maxBatch + 10
	for range more {
		ca.Receive(react, false) // on, off, on...
	}
	waitFor(t, func() bool { return in.n.Load() == int64(2+more) })
	close(release)
	waitFor(t, func() bool { return a.frames.Load() == int64(3+more) })
	mu.Lock()
	defer mu.Unlock()
	got, sum := sizes[2:], 0
	for _, n := range got {
		sum += n
	}
	if got[0] != maxBatch || sum != more {
		t.Errorf("batches %v after the stalled one: want the first of %d, %d in all", got, maxBatch, more)
	}
}

// A store that says another writer took a batch's ids (persistence.ErrConflict)
// stored nothing of it: the senders are told to send again, and what the
// other writer stored is read back and delivered before the next post.
func TestConflictStoresNothingOfOurs(t *testing.T) {
	hs := &hookStore{Store: persistence.NewMemory()}
	hs.append = func(call int, room string, msgs []persistence.Message, inner persistence.Store) error {
		if call == 2 {
			theirs := []persistence.Message{{ID: msgs[0].ID, Data: []byte(`{"id":2,"number":1,"time":1,"uid":"ux","nickName":"x","avatarUrl":"","text":true,"content":"theirs"}`)}}
			if err := inner.AppendMessages(room, theirs); err != nil {
				return err
			}
			return fmt.Errorf("appending: %w", persistence.ErrConflict)
		}
		return inner.AppendMessages(room, msgs)
	}
	hub := NewHub(Options{Store: hs, Rate: Rate{Off: true}})
	defer hub.Shutdown(5 * time.Second)
	a := &captureSink{}
	ca := connect(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: a})
	exactly(t, a, 1)
	ca.Receive(text("one"), false)
	exactly(t, a, 2)
	ca.Receive([]byte(`{"text":true,"content":"two","cid":"c"}`), false)
	got := exactly(t, a, 3)[2]
	if got["error"] != protocol.ErrUnavailable || got["cid"] != "c" || !strings.Contains(got["message"].(string), "another node took its id") {
		t.Errorf("after a conflict: %v", got)
	}
	time.Sleep(retryBroken + 50*time.Millisecond) // the room reads the store again
	ca.Receive([]byte(`{"text":true,"content":"two","cid":"c"}`), false)
	checkIDs(t, "then", exactly(t, a, 5)[3:], "remote:2:theirs", "user:3:two:c")
}

// Taking back one of two emoji lowers that emoji's count, not the other's.
func TestTakeBackLowersItsOwnCount(t *testing.T) {
	st := persistence.NewMemory()
	hub := NewHub(Options{Store: st, Rate: Rate{Off: true}})
	defer hub.Shutdown(5 * time.Second)
	a := &captureSink{}
	ca := connect(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: a, V2: true})
	exactly(t, a, 1)
	ca.Receive(text("m"), false)
	exactly(t, a, 2)
	for i, emoji := range []string{"👍", "❤️", "👍"} {
		ca.Receive([]byte(`{"react":1,"emoji":"`+emoji+`"}`), false)
		exactly(t, a, 3+i)
	}
	if counts, mine, err := st.Reactions("r", 1, "ua"); err != nil || string(counts) != `{"❤️":1}` || string(mine) != `["❤️"]` {
		t.Errorf("after taking back 👍: counts %s, own %s (%v); want ❤️ alone", counts, mine, err)
	}
}
