package actors

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pandachat/pandachat/internal/faultstore"
	"github.com/pandachat/pandachat/persistence"
	"github.com/pandachat/pandachat/protocol"
)

// A batch is flushed the moment it holds maxBatch messages or maxBatchBytes
// of them: posts queued behind a stalled write are stored in batches of
// exactly that, never one more.
func TestBatchCaps(t *testing.T) {
	// The stored size of a message of ua with a three-digit id and n bytes of content.
	stored := func(n int) int {
		rec := protocol.Record{ID: 123, Number: 1, Time: time.Now().UnixMilli(), UID: "ua", Kind: protocol.KindText, Content: strings.Repeat("z", n)}
		return len(protocol.AppendRecord(nil, &rec))
	}
	for _, tc := range []struct {
		name    string
		content int // bytes of each message
		posts   int
		limit   int // messages in a full batch
	}{
		{"count", 1, maxBatch*2 + 5, maxBatch},
		{"bytes", 0, 600, maxBatchBytes / 2048}, // content set below: 2048 bytes stored each
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "bytes" {
				tc.content = 2048 - stored(0) // 2048 bytes stored: 512 fill maxBatchBytes
			}
			var mu sync.Mutex
			var sizes []int
			stalled, release := make(chan struct{}), make(chan struct{})
			hs := &hookStore{Store: persistence.NewMemory()}
			hs.append = func(call int, room string, msgs []persistence.Message, inner persistence.Store) error {
				mu.Lock()
				sizes = append(sizes, len(msgs))
				mu.Unlock()
				if call == 101 { // after 100 single posts: every later id has three digits
					close(stalled)
					<-release
				}
				return inner.AppendMessages(room, msgs)
			}
			in := &inCounter{}
			hub := NewHub(Options{Store: hs, Rate: Rate{Off: true}, MaxContent: 5000, MaxInflight: 4096, Observer: in})
			defer hub.Shutdown(5 * time.Second)
			a := &countSink{}
			ca := connect(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: a})
			waitFor(t, func() bool { return a.frames.Load() == 1 })
			for i := range 101 {
				ca.Receive(text("x"), false)
				waitFor(t, func() bool { return a.frames.Load() == int64(i)+2 || i == 100 })
			}
			within(t, stalled)
			body := text(strings.Repeat("z", tc.content))
			for range tc.posts {
				ca.Receive(body, false)
			}
			// The posts have reached the connection actor, which sends them on behind
			// the stalled write.
			waitFor(t, func() bool { return in.n.Load() == int64(101+tc.posts) })
			close(release)
			waitFor(t, func() bool { return a.frames.Load() == int64(102+tc.posts) })
			mu.Lock()
			defer mu.Unlock()
			// The first batch is full to the cap; none holds more, and all are stored. (The
			// last posts may still be on their way when the write is released: the
			// remainder can come in more than one batch.)
			got, sum := sizes[101:], 0
			for _, n := range got {
				sum += n
				if n > tc.limit {
					t.Errorf("a batch of %d, above the cap of %d: %v", n, tc.limit, got)
				}
			}
			if got[0] != tc.limit || sum != tc.posts {
				t.Errorf("batches %v: want the first at the cap of %d, %d in all", got, tc.limit, tc.posts)
			}
		})
	}
}

// inCounter counts the frames connection actors have handled (and sent on).
type inCounter struct {
	NopObserver
	n atomic.Int64
}

func (c *inCounter) MessageIn() { c.n.Add(1) }

// A write that fails after its commit leaves the room healthy: the next post
// is taken at once. A write that fails is refused as "not stored"; one whose
// outcome the store cannot then tell, as "not confirmed".
func TestFailedWritesAndTheNextPost(t *testing.T) {
	fs := faultstore.New(badger(t))
	hub := NewHub(Options{Store: fs, Rate: Rate{Off: true}})
	defer hub.Shutdown(5 * time.Second)
	a := &captureSink{}
	ca := connectJoined(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: a})
	fs.FailAfterCommit(1)
	ca.Receive(textCID("x"), false)
	frames(t, a, 2)
	ca.Receive(textCID("y"), false)
	if f := frames(t, a, 3); f[1]["id"] != float64(1) || f[2]["id"] != float64(2) {
		t.Fatalf("after a write that failed past its commit: %v", f[1:])
	}
	fs.FailWrites(1)
	ca.Receive(textCID("z"), false)
	if f := frames(t, a, 4)[3]; f["error"] != protocol.ErrUnavailable || !strings.HasPrefix(fmt.Sprint(f["message"]), "message not stored") {
		t.Errorf("a failed write: %v", f)
	}
	fs.FailWrites(1)
	fs.FailReads(1)
	ca.Receive(textCID("w"), false)
	if f := frames(t, a, 5)[4]; f["error"] != protocol.ErrUnavailable || !strings.HasPrefix(fmt.Sprint(f["message"]), "message not confirmed") {
		t.Errorf("a failed write the store cannot tell about: %v", f)
	}
}

// broadcasts records what the room tells the observer of each fan-out.
type broadcasts struct {
	NopObserver
	mu  sync.Mutex
	got []string
}

func (b *broadcasts) Broadcast(messages, deliveries int, _ time.Duration) {
	b.mu.Lock()
	b.got = append(b.got, fmt.Sprintf("%d/%d", messages, deliveries))
	b.mu.Unlock()
}

func (b *broadcasts) all() string { b.mu.Lock(); defer b.mu.Unlock(); return fmt.Sprint(b.got) }

// A fan-out counts a delivery per message and member, the slow member it
// dropped included.
func TestBroadcastCountsDeliveries(t *testing.T) {
	obs := &broadcasts{}
	hub := NewHub(Options{Store: persistence.NewMemory(), Rate: Rate{Off: true}, Observer: obs})
	defer hub.Shutdown(5 * time.Second)
	a, b, s := &captureSink{}, &captureSink{}, &pingSink{}
	ca := connectJoined(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: a})
	connect(t, hub, ConnSpec{UID: "ub", Room: "r", Sink: b, Presence: true})
	frames(t, b, 1)
	connect(t, hub, ConnSpec{UID: "us", Room: "r", Sink: s})
	if f := frames(t, b, 2)[1]; f["num"] != float64(3) { // s has joined
		t.Fatalf("presence %v", f)
	}
	ca.Receive(text("one"), false)
	frames(t, b, 3)
	s.mu.Lock()
	s.full = true
	s.mu.Unlock()
	ca.Receive(text("two"), false)
	frames(t, b, 4)
	waitFor(t, func() bool { return obs.all() == "[1/3 1/3]" })
}
