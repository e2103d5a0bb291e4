package actors

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pandachat/pandachat/internal/faultstore"
	"github.com/pandachat/pandachat/persistence"
	"github.com/pandachat/pandachat/protocol"
)

// failHistory fails the first n MessagesAfter calls and answers everything
// else from the real store: the room's last id reads, its history does not.
type failHistory struct {
	persistence.Store
	left atomic.Int32
}

func (s *failHistory) MessagesAfter(room string, after uint64, limit int) ([]persistence.Message, error) {
	if s.left.Add(-1) >= 0 {
		return nil, errors.New("disk trouble")
	}
	return s.Store.MessagesAfter(room, after, limit)
}

// resend posts cid again until the room takes it (it refuses while it cannot
// read its history) and returns the answer.
func resend(t *testing.T, c *Conn, s *captureSink, cid string) map[string]any {
	t.Helper()
	for try := 0; try < 20; try++ {
		n := len(s.all())
		c.Receive(textCID(cid), false)
		f := frames(t, s, n+1)[n]
		if f["error"] != "ERR_UNAVAILABLE" {
			return f
		}
		time.Sleep(retryBroken)
	}
	t.Fatalf("re-send of %s refused 20 times", cid)
	return nil
}

// A room that starts while its history cannot be read does not know its
// recent cids: it refuses posts until it does, so a re-send after a restart
// gets the original's echo instead of being stored twice.
func TestUnreadableHistoryAtStartKeepsCIDs(t *testing.T) {
	st := badger(t)
	hub := NewHub(Options{Store: st, Rate: Rate{Off: true}})
	a := &captureSink{}
	connectJoined(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: a}).Receive(textCID("k"), false)
	frames(t, a, 2)
	hub.Shutdown(5 * time.Second)

	fs := &failHistory{Store: st}
	fs.left.Store(1)
	hub = NewHub(Options{Store: fs, Rate: Rate{Off: true}})
	defer hub.Shutdown(5 * time.Second)
	b := &captureSink{}
	cb := connectJoined(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: b})
	if f := resend(t, cb, b, "k"); f["id"] != float64(1) || f["cid"] != "k" {
		t.Errorf("re-send after a restart that could not read the history: %v; want the echo of id 1", f)
	}
	if last, _ := st.LastID("r"); last != 1 {
		t.Errorf("last id %d: the re-send was stored again", last)
	}
}

// A busy room's restart reads back the cids of more messages than its tail
// holds, as far as the cid window goes: a re-send of an older one is not
// stored twice.
func TestCIDsBeyondTheTailReloaded(t *testing.T) {
	st := badger(t)
	now := time.UnixMilli(1700000000000)
	const n = 3000 // the tail holds 1 024
	var msgs []persistence.Message
	for i := uint64(1); i <= n; i++ {
		rec := protocol.Record{ID: i, Time: now.Add(-time.Minute).UnixMilli(), UID: fmt.Sprint("u", i%7), NickName: "n", Kind: protocol.KindText, Content: "c"}
		m := persistence.Message{ID: i, Data: protocol.AppendRecord(nil, &rec), CID: fmt.Sprint("c", i)}
		msgs = append(msgs, m)
	}
	if err := st.AppendMessages("r", msgs); err != nil {
		t.Fatal(err)
	}
	hub := NewHub(Options{Store: st, Rate: Rate{Off: true}, Now: func() time.Time { return now }})
	defer hub.Shutdown(5 * time.Second)
	for _, id := range []uint64{1, n - 1024, n} { // the oldest, the newest outside the tail, the newest
		s := &captureSink{}
		c := connectJoined(t, hub, ConnSpec{UID: fmt.Sprint("u", id%7), Room: "r", Sink: s})
		if f := resend(t, c, s, fmt.Sprint("c", id)); f["id"] != float64(id) {
			t.Errorf("re-send of the cid of %d after a restart: %v; want its echo", id, f)
		}
	}
	if last, _ := st.LastID("r"); last != n {
		t.Errorf("last id %d: a re-send was stored again", last)
	}
}

// Messages the store holds after a write the room was told failed, and could
// not read back, reach the members once the store answers: without waiting
// for another post.
func TestStoredAfterFailedWriteArrivesWithoutAPost(t *testing.T) {
	fs := faultstore.New(badger(t))
	hub := NewHub(Options{Store: fs, Rate: Rate{Off: true}})
	defer hub.Shutdown(5 * time.Second)
	a, b := &captureSink{}, &captureSink{}
	ca := connectJoined(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: a})
	connectJoined(t, hub, ConnSpec{UID: "ub", Room: "r", Sink: b})
	fs.FailAfterCommit(1) // stored, the room told it failed
	fs.FailReads(1)       // and cannot ask what the store holds
	ca.Receive(textCID("x"), false)
	waitFor(t, func() bool { return len(ofType(a.all(), "error", "ERR_UNAVAILABLE")) == 1 })
	waitFor(t, func() bool { return len(ids(b.all())) == 1 })
	if got := ids(b.all()); !sameIDs(got, seq(1, 1)) {
		t.Errorf("member got %v; want the stored message 1", got)
	}
	if f := resend(t, ca, a, "x"); f["id"] != float64(1) {
		t.Errorf("re-send of the unconfirmed message: %v; want the echo of 1", f)
	}
}

// An event read back from the store (it was stored, the room was told it was
// not) reaches readers of version 2 only, like any event.
func TestReadBackEventSkipsVersion1(t *testing.T) {
	fs := faultstore.New(badger(t))
	hub := NewHub(Options{Store: fs, Rate: Rate{Off: true}})
	defer hub.Shutdown(5 * time.Second)
	a, b := &captureSink{}, &captureSink{}
	ca := connectJoined(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: a, V2: true})
	connectJoined(t, hub, ConnSpec{UID: "ub", Room: "r", Sink: b})
	ca.Receive(text("secret"), false)
	frames(t, b, 2)
	fs.FailAfterCommit(1)
	fs.FailReads(1)
	ca.Receive([]byte(`{"recall":1}`), false)
	waitFor(t, func() bool { return len(ofType(a.all(), "type", "recall")) == 1 })
	ca.Receive(text("after"), false)
	waitFor(t, func() bool { return len(ofType(b.all(), "content", "after")) == 1 })
	for _, f := range b.all() {
		if f["type"] == "recall" || f["type"] == "react" {
			t.Errorf("a reader of version 1 got an event: %v", f)
		}
	}
}

// A connection closed by the room (its session ended) while its re-send of a
// pending message waits gets that echo before it is closed: closes come last.
func TestKickedConnectionGetsItsPendingEchoFirst(t *testing.T) {
	stalled, release := make(chan struct{}), make(chan struct{})
	hs := &hookStore{Store: badger(t)}
	hs.append = stallFirst(stalled, release, nil)
	hub := NewHub(Options{Store: hs, Rate: Rate{Off: true}})
	defer hub.Shutdown(5 * time.Second)
	a, b := &captureSink{}, &captureSink{}
	ca := connectJoined(t, hub, ConnSpec{UID: "ua", SessionID: "s1", Room: "r", Sink: a})
	cb := connectJoined(t, hub, ConnSpec{UID: "ua", SessionID: "s2", Room: "r", Sink: b})
	ca.Receive(text("first"), false) // its write stalls: what follows queues
	within(t, stalled)
	ca.Receive(textCID("x"), false)
	time.Sleep(50 * time.Millisecond)
	cb.Receive(textCID("x"), false) // the same user's re-send: waits for x's batch
	time.Sleep(50 * time.Millisecond)
	hub.EndSession("s2")
	time.Sleep(50 * time.Millisecond)
	close(release)
	waitFor(t, func() bool { n := len(b.all()); return n > 0 && b.all()[n-1]["close"] != nil })
	got := b.all()
	echo := -1
	for i, f := range got {
		if f["cid"] == "x" {
			echo = i
		}
	}
	if echo < 0 || got[echo]["id"] != float64(2) {
		t.Fatalf("frames %v; want the echo of x (id 2) before the close", got)
	}
	if last, _ := hs.LastID("r"); last != 2 {
		t.Errorf("last id %d, want 2: x stored once", last)
	}
}

// An admission the asker stopped waiting for (the users actor was that far
// behind) is refused, not counted: a slot it held would never be freed.
func TestLateAdmissionHoldsNoSlot(t *testing.T) {
	hub := NewHub(Options{Store: persistence.NewMemory(), Rate: Rate{Off: true}, MaxConnsPerUser: 1})
	defer hub.Shutdown(5 * time.Second)
	res, err := hub.system.Root.RequestFuture(hub.users, &admit{UID: "ua", Until: time.Now().Add(-time.Second)}, 5*time.Second).Result()
	if err != nil || res.(*admission).err == nil {
		t.Fatalf("a late admission: %v, %v; want it refused", res, err)
	}
	connectJoined(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: &captureSink{}}) // the user's one slot is free
}

// closingSink is a socket's queue as the transport has it: once closed it
// takes nothing and says true; error frames it refuses (its queue is full).
type closingSink struct {
	captureSink
	closing atomic.Bool
}

func (s *closingSink) Send(frames ...[]byte) bool {
	for _, f := range frames {
		if strings.Contains(string(f), `"type":"error"`) {
			return false
		}
	}
	if s.closing.Load() {
		return true
	}
	return s.captureSink.Send(frames...)
}

func (s *closingSink) Close(code int, reason string, last ...[]byte) {
	s.closing.Store(true)
	s.captureSink.Close(code, reason, last...)
}

// A connection closed as a slow consumer by its own refusal (its queue could
// not take the error) does not move the read position: its queue, with the
// batches the room kept handing it, was discarded unread.
func TestSlowConsumerCloseKeepsTheReadPosition(t *testing.T) {
	st := persistence.NewMemory()
	hub := NewHub(Options{Store: st, Rate: Rate{Off: true}})
	a, b := &closingSink{}, &captureSink{}
	ca := connect(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: a})
	waitFor(t, func() bool { return len(a.all()) == 1 })
	cb := connectJoined(t, hub, ConnSpec{UID: "ub", Room: "r", Sink: b})
	cb.Receive(text("read"), false)
	waitFor(t, func() bool { return len(ids(a.all())) == 1 })
	ca.Receive([]byte(`{"text":true}`), false) // refused; the error does not fit: closed with 1013
	waitFor(t, func() bool { return a.closing.Load() })
	cb.Receive(text("never read 1"), false)
	cb.Receive(text("never read 2"), false)
	waitFor(t, func() bool { return len(ids(b.all())) == 3 })
	ca.Closed()
	hub.Shutdown(5 * time.Second) // the room writes its read positions as it stops
	if id, err := st.ReadPosition("ua", "r"); err != nil || id > 1 {
		t.Errorf("read position of the dropped connection: %d, %v; want at most 1 (what it was sent before the close)", id, err)
	}
}

// A connection of version 1 that re-sends the cid of a message recalled since
// gets an error, not the recalled stub (version 1 never sees recalls).
func TestVersion1ResendOfARecalledCID(t *testing.T) {
	hub := NewHub(Options{Store: persistence.NewMemory(), Rate: Rate{Off: true}})
	defer hub.Shutdown(5 * time.Second)
	v1, v2 := &captureSink{}, &captureSink{}
	c1 := connectJoined(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: v1})
	c2 := connectJoined(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: v2, V2: true})
	c1.Receive(textCID("c1"), false)
	frames(t, v2, 2)
	c2.Receive([]byte(`{"recall":1}`), false)
	waitFor(t, func() bool { return len(ofType(v2.all(), "type", "recall")) == 1 })
	n := len(v1.all())
	c1.Receive(textCID("c1"), false)
	f := frames(t, v1, n+1)[n]
	if f["type"] != "error" || f["error"] != "ERR_BAD_MESSAGE" || f["cid"] != "c1" {
		t.Errorf("version 1 re-send of a recalled cid got %v; want ERR_BAD_MESSAGE with the cid", f)
	}
}
