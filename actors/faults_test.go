package actors

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pandachat/pandachat/internal/faultstore"
	"github.com/pandachat/pandachat/persistence"
)

// hookStore runs a test's function in place of AppendMessages: the test decides
// per call what is stored and what is answered. The inner store is real Badger.
type hookStore struct {
	persistence.Store
	calls  atomic.Int32
	append func(call int, room string, msgs []persistence.Message, inner persistence.Store) error
}

func (h *hookStore) AppendMessages(room string, msgs []persistence.Message) error {
	n := int(h.calls.Add(1))
	if h.append == nil {
		return h.Store.AppendMessages(room, msgs)
	}
	return h.append(n, room, msgs, h.Store)
}

func badger(t *testing.T) *persistence.Badger {
	t.Helper()
	bs, err := persistence.OpenBadger(t.TempDir(), persistence.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bs.Close() })
	return bs
}

// stallFirst blocks the first write until release is closed, so that posts
// sent meanwhile queue up and form the next batch.
func stallFirst(stalled chan<- struct{}, release <-chan struct{}, then func(call int, room string, msgs []persistence.Message, inner persistence.Store) error) func(int, string, []persistence.Message, persistence.Store) error {
	return func(call int, room string, msgs []persistence.Message, inner persistence.Store) error {
		if call == 1 {
			close(stalled)
			<-release
			return inner.AppendMessages(room, msgs)
		}
		if then != nil {
			return then(call, room, msgs, inner)
		}
		return inner.AppendMessages(room, msgs)
	}
}

func text(s string) []byte    { return []byte(`{"text":true,"content":"` + s + `"}`) }
func textCID(s string) []byte { return []byte(`{"text":true,"content":"` + s + `","cid":"` + s + `"}`) }
func ids(fs []map[string]any) []uint64 {
	var out []uint64
	for _, f := range fs {
		if id, ok := f["id"].(float64); ok {
			out = append(out, uint64(id))
		}
	}
	return out
}

func ofType(fs []map[string]any, key, value string) []map[string]any {
	var out []map[string]any
	for _, f := range fs {
		if f[key] == value {
			out = append(out, f)
		}
	}
	return out
}

func seq(from, to uint64) []uint64 {
	var out []uint64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

func sameIDs(a, b []uint64) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

// A batch the store half-commits is delivered as far as it was stored: every
// member sees the stored ids, the rest are refused to their senders and their
// ids given out again, and a replay from 0 equals what members saw — no gap.
func TestPartlyStoredBatch(t *testing.T) {
	stalled, release := make(chan struct{}), make(chan struct{})
	hs := &hookStore{Store: badger(t)}
	hs.append = stallFirst(stalled, release, func(call int, room string, msgs []persistence.Message, inner persistence.Store) error {
		if call == 2 { // the batch of five: two stored, then the write fails
			if err := inner.AppendMessages(room, msgs[:2]); err != nil {
				return err
			}
			return errors.New("disk trouble")
		}
		return inner.AppendMessages(room, msgs)
	})
	hub := NewHub(Options{Store: hs, Rate: Rate{Off: true}})
	defer hub.Shutdown(5 * time.Second)
	a, b := &captureSink{}, &captureSink{}
	ca := connect(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: a})
	waitFor(t, func() bool { return len(a.all()) == 1 })
	connect(t, hub, ConnSpec{UID: "ub", Room: "r", Sink: b})
	waitFor(t, func() bool { return len(b.all()) == 1 })

	ca.Receive(textCID("m1"), false)
	within(t, stalled)
	for _, s := range []string{"m2", "m3", "m4", "m5", "m6"} {
		ca.Receive(textCID(s), false)
	}
	time.Sleep(100 * time.Millisecond) // the five queue behind the stalled write
	close(release)
	waitFor(t, func() bool { return len(ofType(a.all(), "error", "ERR_UNAVAILABLE")) == 3 })
	if got := ids(b.all()); !sameIDs(got, seq(1, 3)) {
		t.Fatalf("the other member saw ids %v, want 1..3 (what the store holds)", got)
	}
	refused := ofType(a.all(), "error", "ERR_UNAVAILABLE")
	for i, want := range []string{"m4", "m5", "m6"} {
		if refused[i]["cid"] != want {
			t.Errorf("refusal %d is for %v, want %s", i, refused[i]["cid"], want)
		}
	}
	// The refused are re-sent with their cids: stored once each, ids go on at 4.
	for _, s := range []string{"m4", "m5", "m6"} {
		ca.Receive(textCID(s), false)
	}
	waitFor(t, func() bool { return len(ids(b.all())) == 6 })
	if got := ids(b.all()); !sameIDs(got, seq(1, 6)) {
		t.Fatalf("ids after the re-sends: %v, want 1..6", got)
	}
	late := &captureSink{}
	connect(t, hub, ConnSpec{UID: "uc", Room: "r", Sink: late, HasSince: true, Since: 0})
	waitFor(t, func() bool { return len(late.all()) == 7 })
	if got := ids(late.all()); !sameIDs(got, seq(1, 6)) {
		t.Errorf("replay from 0: %v, want 1..6", got)
	}
}

// When even the last id cannot be read after a failed write, nothing of the
// batch is delivered; once the store answers, what it holds is delivered
// before any new message, and re-sent cids get their original echo.
func TestStoreUnreadableAfterFailedWrite(t *testing.T) {
	stalled, release := make(chan struct{}), make(chan struct{})
	fs := faultstore.New(badger(t))
	hs := &hookStore{Store: fs}
	hs.append = stallFirst(stalled, release, func(call int, room string, msgs []persistence.Message, inner persistence.Store) error {
		if call == 2 {
			if err := inner.AppendMessages(room, msgs[:2]); err != nil {
				return err
			}
			fs.FailReads(1) // the room's LastID after the failure
			return errors.New("disk trouble")
		}
		return inner.AppendMessages(room, msgs)
	})
	hub := NewHub(Options{Store: hs, Rate: Rate{Off: true}})
	defer hub.Shutdown(5 * time.Second)
	a, b := &captureSink{}, &captureSink{}
	ca := connect(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: a})
	waitFor(t, func() bool { return len(a.all()) == 1 })
	connect(t, hub, ConnSpec{UID: "ub", Room: "r", Sink: b})
	waitFor(t, func() bool { return len(b.all()) == 1 })

	ca.Receive(textCID("m1"), false)
	within(t, stalled)
	for _, s := range []string{"m2", "m3", "m4"} {
		ca.Receive(textCID(s), false)
	}
	time.Sleep(100 * time.Millisecond)
	close(release)
	waitFor(t, func() bool { return len(ofType(a.all(), "error", "ERR_UNAVAILABLE")) == 3 })
	if got := ids(b.all()); !sameIDs(got, seq(1, 1)) {
		t.Fatalf("while the store cannot say what it holds, members saw %v; want only 1", got)
	}
	time.Sleep(retryBroken + 50*time.Millisecond)
	for _, s := range []string{"m2", "m3", "m4"} { // m2 and m3 were stored after all
		ca.Receive(textCID(s), false)
	}
	waitFor(t, func() bool { return len(ids(b.all())) == 4 })
	if got := ids(b.all()); !sameIDs(got, seq(1, 4)) {
		t.Fatalf("after the store recovered members saw %v, want 1..4", got)
	}
	waitFor(t, func() bool { return len(ofType(a.all(), "cid", "m4")) == 2 })
	var echoes []string
	for _, f := range a.all() {
		if f["type"] == "user" && f["cid"] != nil {
			echoes = append(echoes, fmt.Sprintf("%v#%v", f["cid"], f["id"]))
		}
	}
	if got := strings.Join(echoes, " "); got != "m1#1 m2#2 m3#3 m4#4" {
		t.Errorf("sender's echoes: %s; want m1#1 m2#2 m3#3 m4#4 (re-sends answered with the original ids)", got)
	}
	if last, _ := fs.LastID("r"); last != 4 {
		t.Errorf("store holds %d messages, want 4", last)
	}
}

// A write that fails after its rows became visible (an fsync failure under
// --sync) is delivered: the store holds it, so everyone must see it.
func TestFailAfterCommitIsDelivered(t *testing.T) {
	fs := faultstore.New(badger(t))
	hub := NewHub(Options{Store: fs, Rate: Rate{Off: true}})
	defer hub.Shutdown(5 * time.Second)
	a, b := &captureSink{}, &captureSink{}
	ca := connect(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: a})
	waitFor(t, func() bool { return len(a.all()) == 1 })
	connect(t, hub, ConnSpec{UID: "ub", Room: "r", Sink: b})
	waitFor(t, func() bool { return len(b.all()) == 1 })
	fs.FailAfterCommit(1)
	ca.Receive(textCID("x"), false)
	ca.Receive(textCID("y"), false)
	waitFor(t, func() bool { return len(ids(b.all())) == 2 })
	if got := ids(b.all()); !sameIDs(got, seq(1, 2)) {
		t.Errorf("members saw %v, want 1..2", got)
	}
	if n := len(ofType(a.all(), "error", "ERR_UNAVAILABLE")); n != 0 {
		t.Errorf("sender told %d times that a stored message was not stored", n)
	}
}

// A replay the store cannot read closes the joiner with 1011 (it reconnects
// with since) instead of leaving a silent gap.
func TestReplayReadFailureCloses(t *testing.T) {
	fs := faultstore.New(badger(t))
	hub := NewHub(Options{Store: fs, Rate: Rate{Off: true}, TailSize: -1})
	defer hub.Shutdown(5 * time.Second)
	a := &captureSink{}
	ca := connect(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: a})
	waitFor(t, func() bool { return len(a.all()) == 1 })
	ca.Receive(text("one"), false)
	waitFor(t, func() bool { return len(a.all()) == 2 })
	fs.FailReads(1)
	j := &captureSink{}
	connect(t, hub, ConnSpec{UID: "uj", Room: "r", Sink: j, HasSince: true, Since: 0})
	waitFor(t, func() bool { return len(j.all()) == 1 })
	if got := j.all(); got[0]["close"] != float64(1011) {
		t.Fatalf("joiner got %v, want only close 1011", got)
	}
	j2 := &captureSink{}
	connect(t, hub, ConnSpec{UID: "uj", Room: "r", Sink: j2, HasSince: true, Since: 0})
	waitFor(t, func() bool { return len(j2.all()) == 2 })
	if got := ids(j2.all()); !sameIDs(got, seq(1, 1)) {
		t.Errorf("the reconnect replayed %v, want [1]", got)
	}
}

// Joins queued in a room that then crashes are not left waiting: those
// connections are closed with 1011, and shutdown does not wait for them.
func TestJoinsToACrashingRoom(t *testing.T) {
	stalled, release := make(chan struct{}), make(chan struct{})
	hs := &hookStore{Store: persistence.NewMemory()}
	hs.append = func(call int, room string, msgs []persistence.Message, inner persistence.Store) error {
		close(stalled)
		<-release
		panic("boom")
	}
	hub := NewHub(Options{Store: hs, Rate: Rate{Off: true}})
	a := &captureSink{}
	ca := connect(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: a})
	waitFor(t, func() bool { return len(a.all()) == 1 })
	ca.Receive(text("crash"), false)
	within(t, stalled)
	late := []*captureSink{{}, {}, {}}
	for i, s := range late {
		connect(t, hub, ConnSpec{UID: fmt.Sprint("late", i), Room: "r", Sink: s})
	}
	time.Sleep(100 * time.Millisecond) // their joins wait behind the stalled write
	close(release)
	for i, s := range late {
		waitFor(t, func() bool { return len(s.all()) > 0 })
		if got := s.all(); got[len(got)-1]["close"] != float64(1011) {
			t.Errorf("late joiner %d got %v, want close 1011", i, got)
		}
	}
	start := time.Now()
	if err := hub.Shutdown(5 * time.Second); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("shutdown took %s", d)
	}
}

// Every post queued before shutdown is stored and confirmed before the 1001.
func TestShutdownConfirmsQueuedPosts(t *testing.T) {
	stalled, release := make(chan struct{}), make(chan struct{})
	hs := &hookStore{Store: badger(t)}
	hs.append = stallFirst(stalled, release, nil)
	hub := NewHub(Options{Store: hs, Rate: Rate{Off: true}})
	a := &captureSink{}
	ca := connect(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: a})
	waitFor(t, func() bool { return len(a.all()) == 1 })
	for i := 1; i <= 5; i++ {
		ca.Receive(textCID(fmt.Sprint(i)), false)
		if i == 1 {
			within(t, stalled)
		}
	}
	time.Sleep(100 * time.Millisecond)
	done := make(chan error)
	go func() { done <- hub.Shutdown(5 * time.Second) }()
	time.Sleep(50 * time.Millisecond)
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := a.all()
	if len(got) != 7 || !sameIDs(ids(got), seq(1, 5)) || got[6]["close"] != float64(1001) {
		t.Errorf("frames %v; want system, echoes 1..5, then close 1001", got)
	}
}

// A close for a session that ended goes behind the echoes of the messages
// the connection sent before it: the client knows which were stored.
func TestEndedSessionClosesBehindEchoes(t *testing.T) {
	stalled, release := make(chan struct{}), make(chan struct{})
	hs := &hookStore{Store: badger(t)}
	hs.append = stallFirst(stalled, release, nil)
	hub := NewHub(Options{Store: hs, Rate: Rate{Off: true}})
	defer hub.Shutdown(5 * time.Second)
	a, other := &captureSink{}, &captureSink{}
	ca := connect(t, hub, ConnSpec{UID: "ua", SessionID: "s1", Room: "r", Sink: a})
	waitFor(t, func() bool { return len(a.all()) == 1 })
	connect(t, hub, ConnSpec{UID: "ua", SessionID: "s2", Room: "r", Sink: other})
	waitFor(t, func() bool { return len(other.all()) == 1 })
	for i := 1; i <= 4; i++ {
		ca.Receive(textCID(fmt.Sprint(i)), false)
		if i == 1 {
			within(t, stalled)
		}
	}
	time.Sleep(100 * time.Millisecond)
	hub.EndSession("s1")
	time.Sleep(50 * time.Millisecond)
	close(release)
	waitFor(t, func() bool { n := len(a.all()); return n > 0 && a.all()[n-1]["close"] != nil })
	got := a.all()
	if len(got) != 7 || !sameIDs(ids(got[:5]), seq(1, 4)) || got[5]["error"] != "ERR_INVALID_SESSION" || got[6]["close"] != float64(1008) {
		t.Errorf("frames %v; want system, echoes 1..4, the session error, close 1008", got)
	}
	ca.Receive(text("after"), false)
	time.Sleep(100 * time.Millisecond)
	if n := len(ids(other.all())); n != 4 {
		t.Errorf("the user's other session saw %d messages, want 4 (nothing after the end)", n)
	}
	if c := other.all(); c[len(c)-1]["close"] != nil {
		t.Error("the user's other session was closed too")
	}
}

// A room that could not read its last id at start takes posts again once the
// store answers, with ids that go on from the store's.
func TestBrokenRoomRecovers(t *testing.T) {
	fs := faultstore.New(badger(t))
	if err := fs.AppendMessages("r", []persistence.Message{{ID: 1, Data: []byte(`{"id":1,"uid":"old"}`)}, {ID: 2, Data: []byte(`{"id":2,"uid":"old"}`)}}); err != nil {
		t.Fatal(err)
	}
	fs.FailReads(1)
	hub := NewHub(Options{Store: fs, Rate: Rate{Off: true}})
	defer hub.Shutdown(5 * time.Second)
	a := &captureSink{}
	ca := connect(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: a})
	waitFor(t, func() bool { return len(a.all()) == 1 })
	ca.Receive(textCID("early"), false)
	waitFor(t, func() bool { return len(a.all()) == 2 })
	if got := a.all()[1]; got["error"] != "ERR_UNAVAILABLE" {
		t.Fatalf("post to a room that cannot read the store: %v", got)
	}
	time.Sleep(retryBroken + 50*time.Millisecond)
	ca.Receive(textCID("later"), false)
	waitFor(t, func() bool { return len(a.all()) == 3 })
	if got := a.all()[2]; got["type"] != "user" || got["id"] != float64(3) {
		t.Errorf("post after the store recovered: %v, want the echo with id 3", got)
	}
}

// After a restart, reconnects with since are served from the tail the room
// loaded once at start, not by one store read each.
func TestTailLoadedAtStart(t *testing.T) {
	fs := faultstore.New(badger(t))
	var msgs []persistence.Message
	for i := uint64(1); i <= 50; i++ {
		msgs = append(msgs, persistence.Message{ID: i, Data: []byte(fmt.Sprintf(`{"id":%d,"uid":"old"}`, i))})
	}
	if err := fs.AppendMessages("r", msgs); err != nil {
		t.Fatal(err)
	}
	hub := NewHub(Options{Store: fs, Rate: Rate{Off: true}})
	defer hub.Shutdown(5 * time.Second)
	for i := 0; i < 20; i++ {
		s := &captureSink{}
		connect(t, hub, ConnSpec{UID: fmt.Sprint("u", i), Room: "r", Sink: s, HasSince: true, Since: uint64(i)})
		waitFor(t, func() bool { return len(s.all()) == 1+50-i })
		if got := ids(s.all()); !sameIDs(got, seq(uint64(i)+1, 50)) {
			t.Fatalf("reconnect %d replayed %v", i, got)
		}
	}
	if n := fs.Calls(faultstore.MessagesAfter); n != 1 {
		t.Errorf("%d store reads for 20 reconnects; want the one at start", n)
	}
}

// A connection closed long ago is not kept reachable by its room: memory per
// past connection of a room that never empties stays small.
func TestPastConnectionsAreForgotten(t *testing.T) {
	hub := NewHub(Options{Store: persistence.NewMemory(), Rate: Rate{Off: true}, ConnectRate: Rate{Off: true}})
	defer hub.Shutdown(5 * time.Second)
	keep := &countSink{} // with presence: a join and a leave frame per visitor
	connect(t, hub, ConnSpec{UID: "keeper", Room: "lobby", Sink: keep, Presence: true})
	waitFor(t, func() bool { return keep.frames.Load() == 1 })
	cycle := func(n int) {
		want := keep.frames.Load() + int64(2*n)
		for i := 0; i < n; i++ {
			s := &countSink{}
			c := connect(t, hub, ConnSpec{UID: "visitor", Room: "lobby", Sink: s})
			for deadline := time.Now().Add(10 * time.Second); s.frames.Load() == 0; runtime.Gosched() {
				if time.Now().After(deadline) {
					t.Fatal("no system frame within 10s")
				}
			}
			c.Closed()
		}
		waitFor(t, func() bool { return keep.frames.Load() == want })
	}
	cycle(200) // warm up pools and maps
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const n = 3000
	cycle(n)
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / n
	t.Logf("%d bytes of heap per past connection", per)
	if per > 1500 {
		t.Errorf("%d bytes of heap kept per past connection; a room must not keep its leavers", per)
	}
}

// One batch of messages from many senders costs memory in proportion to the
// batch, not to the batch times its senders.
func TestBatchOfManySendersIsShared(t *testing.T) {
	stalled, release := make(chan struct{}), make(chan struct{})
	hs := &hookStore{Store: persistence.NewMemory()}
	hs.append = stallFirst(stalled, release, nil)
	hub := NewHub(Options{Store: hs, Rate: Rate{Off: true}})
	defer hub.Shutdown(5 * time.Second)
	const n = 1000
	conns := make([]*Conn, n)
	sinks := make([]*countSink, n)
	for i := range conns {
		sinks[i] = &countSink{}
		conns[i] = connect(t, hub, ConnSpec{UID: fmt.Sprint("u", i), Room: "big", Sink: sinks[i]})
	}
	for _, s := range sinks {
		waitFor(t, func() bool { return s.frames.Load() >= 1 })
	}
	conns[0].Receive(text("first"), false)
	within(t, stalled)
	body := strings.Repeat("x", 200)
	for _, c := range conns {
		c.Receive(text(body), false)
	}
	time.Sleep(300 * time.Millisecond) // all of them queue behind the stalled write
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	close(release)
	for _, s := range sinks {
		waitFor(t, func() bool { return s.frames.Load() >= 1+1+n })
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 64<<20 {
		t.Errorf("one batch of %d messages from %d senders allocated %d MiB; want it shared (a private copy each would be ~%d MiB)",
			n, n, got>>20, n*n*300>>20)
	}
}

// A fast sender is slowed down: with its in-flight frames at the bound the
// read loop waits (TCP then pushes back) until the room has caught up.
func TestInflightBoundWaits(t *testing.T) {
	stalled, release := make(chan struct{}), make(chan struct{})
	hs := &hookStore{Store: persistence.NewMemory()}
	hs.append = stallFirst(stalled, release, nil)
	hub := NewHub(Options{Store: hs, Rate: Rate{Off: true}, MaxInflight: 4})
	defer hub.Shutdown(5 * time.Second)
	a := &captureSink{}
	ca := connect(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: a})
	waitFor(t, func() bool { return len(a.all()) == 1 })
	ca.Receive(text("1"), false)
	within(t, stalled)
	for i := 2; i <= 4; i++ {
		ca.Receive(text(fmt.Sprint(i)), false)
	}
	returned := make(chan struct{})
	go func() { ca.Receive(text("5"), false); close(returned) }()
	select {
	case <-returned:
		t.Fatal("a fifth frame was taken with four in flight")
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	within(t, returned)
	waitFor(t, func() bool { return len(ids(a.all())) == 5 })
	if c := a.all(); c[len(c)-1]["close"] != nil {
		t.Error("a fast sender was closed; it must only be slowed down")
	}
	if n := ca.InFlight(); n != 0 {
		t.Errorf("%d credits still taken after everything was stored", n)
	}
}

// A connection being closed frees a read loop that waits for a credit.
func TestClosedConnectionFreesItsReader(t *testing.T) {
	stalled, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	hs := &hookStore{Store: persistence.NewMemory()}
	hs.append = stallFirst(stalled, release, nil)
	hub := NewHub(Options{Store: hs, Rate: Rate{Off: true}, MaxInflight: 1})
	a := &captureSink{}
	ca := connect(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: a})
	waitFor(t, func() bool { return len(a.all()) == 1 })
	ca.Receive(text("1"), false)
	within(t, stalled)
	returned := make(chan struct{})
	go func() { ca.Receive(text("2"), false); close(returned) }()
	time.Sleep(50 * time.Millisecond)
	ca.Closed()
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("the read loop still waits after its connection closed")
	}
}

// The flood rule: refusals that keep coming for 5 s close the connection; a
// pause of a second between refusals starts the count again.
func TestFloodNeedsFiveSecondsOfRefusals(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1700000000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	hub := NewHub(Options{Store: persistence.NewMemory(), Rate: Rate{Messages: 1, Per: 1000 * time.Hour}, Now: clock})
	defer hub.Shutdown(5 * time.Second)
	a := &captureSink{}
	ca := connect(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: a})
	waitFor(t, func() bool { return len(a.all()) == 1 })
	ca.Receive(text("allowed"), false)
	frames := 2
	send := func(every time.Duration, count int) {
		for i := 0; i < count; i++ {
			ca.Receive(text("refused"), false)
			frames++
			waitFor(t, func() bool { return len(a.all()) >= frames })
			advance(every)
		}
	}
	send(100*time.Millisecond, 49) // 4.8 s of refusals
	advance(time.Second)           // a pause
	send(100*time.Millisecond, 49) // 4.8 s again
	if c := a.all(); c[len(c)-1]["close"] != nil {
		t.Fatalf("closed after refusals with a pause: %v", c[len(c)-1])
	}
	for i := 0; i < 5; i++ {
		ca.Receive(text("refused"), false)
		advance(100 * time.Millisecond)
	}
	waitFor(t, func() bool { c := a.all(); return c[len(c)-1]["close"] != nil })
	if c := a.all(); c[len(c)-1]["close"] != float64(1008) {
		t.Errorf("flood closed with %v, want 1008", c[len(c)-1])
	}
}

// A user's connections are capped; a closed one frees its slot.
func TestConnectionsPerUser(t *testing.T) {
	hub := NewHub(Options{Store: persistence.NewMemory(), MaxConnsPerUser: 2})
	defer hub.Shutdown(5 * time.Second)
	c1 := connect(t, hub, ConnSpec{UID: "u", Room: "r", Sink: &countSink{}})
	connect(t, hub, ConnSpec{UID: "u", Room: "r", Sink: &countSink{}})
	if _, err := hub.Connect(ConnSpec{UID: "u", Room: "other", Sink: &countSink{}}); !errors.Is(err, ErrTooManyConnections) {
		t.Fatalf("third connection: %v, want ErrTooManyConnections", err)
	}
	connect(t, hub, ConnSpec{UID: "someone else", Room: "r", Sink: &countSink{}})
	c1.Closed()
	waitFor(t, func() bool {
		c, err := hub.Connect(ConnSpec{UID: "u", Room: "r", Sink: &countSink{}})
		if err == nil {
			c.Closed()
		}
		return err == nil
	})
}

// A re-sent cid within two minutes stores nothing new and gets the original
// echo; after the window it is a new message; another user's equal cid is theirs.
func TestCIDIdempotency(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	store := persistence.NewMemory()
	hub := NewHub(Options{Store: store, Rate: Rate{Off: true}, Now: clock, IdleRoom: 30 * time.Millisecond})
	defer hub.Shutdown(5 * time.Second)
	a, b := &captureSink{}, &captureSink{}
	ca := connect(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: a})
	cb := connect(t, hub, ConnSpec{UID: "ub", Room: "r", Sink: b})
	waitFor(t, func() bool { return len(a.all()) == 1 && len(b.all()) == 1 })
	ca.Receive(textCID("k"), false)
	ca.Receive(textCID("k"), false) // at once, while the first may still be pending
	waitFor(t, func() bool { return len(ofType(a.all(), "cid", "k")) == 2 })
	for _, f := range ofType(a.all(), "cid", "k") {
		if f["id"] != float64(1) || f["type"] != "user" {
			t.Errorf("echo %v, want the original (id 1)", f)
		}
	}
	cb.Receive(textCID("k"), false) // same cid, another user: a message of its own
	waitFor(t, func() bool { return len(ofType(b.all(), "cid", "k")) == 1 })
	if f := ofType(b.all(), "cid", "k")[0]; f["id"] != float64(2) {
		t.Errorf("another user's cid: %v, want id 2", f)
	}
	// The room stops and starts again: the cid is still known (from the store).
	ca.Closed()
	cb.Closed()
	waitFor(t, func() bool { return hub.Rooms() == 0 })
	a2 := &captureSink{}
	ca2 := connect(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: a2})
	waitFor(t, func() bool { return len(a2.all()) == 1 })
	ca2.Receive(textCID("k"), false)
	waitFor(t, func() bool { return len(a2.all()) == 2 })
	if f := a2.all()[1]; f["id"] != float64(1) || f["cid"] != "k" {
		t.Errorf("re-send after the room restarted: %v, want the echo of id 1", f)
	}
	mu.Lock()
	now = now.Add(cidWindow + time.Second)
	mu.Unlock()
	ca2.Receive(textCID("k"), false)
	waitFor(t, func() bool { return len(a2.all()) == 3 })
	if f := a2.all()[2]; f["id"] != float64(3) {
		t.Errorf("re-send after the window: %v, want a new message (id 3)", f)
	}
	if last, _ := store.LastID("r"); last != 3 {
		t.Errorf("store holds %d messages, want 3", last)
	}
}

// A joiner whose first frame cannot be queued never became a member: nobody
// hears of it leaving.
func TestFailedJoinHasNoPresence(t *testing.T) {
	hub := NewHub(Options{Store: persistence.NewMemory()})
	defer hub.Shutdown(5 * time.Second)
	watcher := &captureSink{}
	connect(t, hub, ConnSpec{UID: "w", Room: "r", Sink: watcher, Presence: true})
	waitFor(t, func() bool { return len(watcher.all()) == 1 })
	connect(t, hub, ConnSpec{UID: "full", Room: "r", Sink: fullSink{}})
	time.Sleep(100 * time.Millisecond)
	if got := watcher.all(); len(got) != 1 {
		t.Errorf("presence frames about a connection that never joined: %v", got[1:])
	}
}

// fullSink refuses everything, as a queue that is full.
type fullSink struct{}

func (fullSink) Send(...[]byte) bool          { return false }
func (fullSink) Close(int, string, ...[]byte) {}

// In one batch each member gets every message once, in id order, as "user"
// when its own user sent it (with the cid only on the sending connection) and
// as "remote" otherwise — however the shared frames are cut up.
func TestFanoutVariants(t *testing.T) {
	stalled, release := make(chan struct{}), make(chan struct{})
	hs := &hookStore{Store: persistence.NewMemory()}
	hs.append = stallFirst(stalled, release, nil)
	hub := NewHub(Options{Store: hs, Rate: Rate{Off: true}})
	defer hub.Shutdown(5 * time.Second)
	a1, a2, b := &captureSink{}, &captureSink{}, &captureSink{}
	c1 := connect(t, hub, ConnSpec{UID: "A", Room: "r", Sink: a1})
	c2 := connect(t, hub, ConnSpec{UID: "A", Room: "r", Sink: a2})
	cb := connect(t, hub, ConnSpec{UID: "B", Room: "r", Sink: b})
	waitFor(t, func() bool { return len(a1.all()) == 1 && len(a2.all()) == 1 && len(b.all()) == 1 })
	c1.Receive(text("first"), false)
	within(t, stalled)
	c1.Receive(textCID("x"), false)
	time.Sleep(20 * time.Millisecond)
	cb.Receive(text("y"), false)
	time.Sleep(20 * time.Millisecond)
	c2.Receive(textCID("z"), false)
	time.Sleep(20 * time.Millisecond)
	c1.Receive(text("w"), false)
	time.Sleep(20 * time.Millisecond)
	cb.Receive(textCID("v"), false)
	time.Sleep(50 * time.Millisecond)
	close(release)
	want := map[*captureSink]string{
		a1: "user:first: user:x:x remote:y: user:z: user:w: remote:v:",
		a2: "user:first: user:x: remote:y: user:z:z user:w: remote:v:",
		b:  "remote:first: remote:x: user:y: remote:z: remote:w: user:v:v",
	}
	for s, w := range want {
		waitFor(t, func() bool { return len(s.all()) == 7 })
		var got []string
		for _, f := range s.all()[1:] {
			cid, _ := f["cid"].(string)
			got = append(got, fmt.Sprintf("%v:%v:%s", f["type"], f["content"], cid))
		}
		if g := strings.Join(got, " "); g != w {
			t.Errorf("got  %s\nwant %s", g, w)
		}
		if !sameIDs(ids(s.all()), seq(1, 6)) {
			t.Errorf("ids %v, want 1..6", ids(s.all()))
		}
		for _, f := range s.all()[1:] {
			if f["number"] != float64(3) {
				t.Errorf("number %v, want 3 (the online count)", f["number"])
			}
		}
	}
}

// A replay never exceeds 4 MiB: the newest messages that fit are sent, ending
// at the last id, with no gap (the client pages older ones from /history).
func TestReplayIsCappedInBytes(t *testing.T) {
	store := persistence.NewMemory()
	hub := NewHub(Options{Store: store, Rate: Rate{Off: true}, MaxContent: 20000})
	defer hub.Shutdown(5 * time.Second)
	a := &countSink{}
	ca := connect(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: a})
	waitFor(t, func() bool { return a.frames.Load() == 1 })
	body := strings.Repeat("z", 10000)
	for i := 0; i < 600; i++ { // 6 MB
		ca.Receive(text(body), false)
	}
	waitFor(t, func() bool { return a.frames.Load() == 601 })
	j := &captureSink{}
	connect(t, hub, ConnSpec{UID: "uj", Room: "r", Sink: j, HasSince: true, Since: 0})
	waitFor(t, func() bool { return len(j.all()) > 1 })
	got := ids(j.all())
	size := 0
	for _, f := range j.all()[1:] {
		size += len(f["content"].(string))
	}
	if size > 4<<20 || len(got) < 300 {
		t.Errorf("replayed %d messages, %d bytes of content; want at most 4 MiB and as many as fit", len(got), size)
	}
	if !sameIDs(got, seq(601-uint64(len(got)), 600)) {
		t.Errorf("replay is not the newest run ending at 600: %v…", got[:3])
	}
}

// Members leave in any order; the ones left keep getting messages and the
// online count stays right (a removal must not drop the wrong member).
func TestLeavesInAnyOrder(t *testing.T) {
	hub := NewHub(Options{Store: persistence.NewMemory(), Rate: Rate{Off: true}})
	defer hub.Shutdown(5 * time.Second)
	sinks := []*captureSink{{}, {}, {}, {}}
	conns := make([]*Conn, len(sinks))
	for i, s := range sinks {
		conns[i] = connect(t, hub, ConnSpec{UID: fmt.Sprint("u", i), Room: "r", Sink: s})
		waitFor(t, func() bool { return len(s.all()) == 1 })
	}
	conns[0].Closed() // the first: the last member moves into its place
	conns[3].Closed() // then that moved member
	time.Sleep(50 * time.Millisecond)
	conns[1].Receive(text("still"), false)
	for _, i := range []int{1, 2} {
		waitFor(t, func() bool { return len(sinks[i].all()) == 2 })
		if f := sinks[i].all()[1]; f["content"] != "still" || f["number"] != float64(2) {
			t.Errorf("member %d got %v; want the message with number 2", i, f)
		}
	}
	late := &captureSink{}
	connect(t, hub, ConnSpec{UID: "late", Room: "r", Sink: late})
	waitFor(t, func() bool { return len(late.all()) == 1 })
	if f := late.all()[0]; f["num"] != float64(3) {
		t.Errorf("system frame %v, want num 3", f)
	}
}

// Binary and malformed frames spend the rate budget like messages.
func TestEveryFrameCountsAgainstTheRate(t *testing.T) {
	hub := NewHub(Options{Store: persistence.NewMemory(), Rate: Rate{Messages: 3, Per: time.Hour}})
	defer hub.Shutdown(5 * time.Second)
	a := &captureSink{}
	ca := connect(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: a})
	waitFor(t, func() bool { return len(a.all()) == 1 })
	ca.Receive([]byte{1, 2, 3}, true)
	ca.Receive([]byte(`not json`), false)
	ca.Receive(textCID("third"), false)
	ca.Receive(textCID("fourth"), false)
	waitFor(t, func() bool { return len(a.all()) == 5 })
	var got []string
	for _, f := range a.all()[1:] {
		got = append(got, fmt.Sprintf("%v/%v", f["error"], f["cid"]))
	}
	slices.Sort(got)
	if g := strings.Join(got, " "); g != "<nil>/third ERR_BAD_MESSAGE/<nil> ERR_BAD_MESSAGE/<nil> ERR_RATE_LIMITED/fourth" {
		t.Errorf("frames: %s; want two refused bad frames, the third accepted, the fourth over the rate", g)
	}
}

// A socket admitted just after its session ended (its session check passed a
// moment before the logout) is closed as soon as it arrives.
func TestSocketOfAnEndedSessionIsClosedOnArrival(t *testing.T) {
	hub := NewHub(Options{Store: persistence.NewMemory()})
	defer hub.Shutdown(5 * time.Second)
	hub.EndSession("gone")
	a := &captureSink{}
	connect(t, hub, ConnSpec{UID: "ua", SessionID: "gone", Room: "r", Sink: a})
	waitFor(t, func() bool { n := len(a.all()); return n > 0 && a.all()[n-1]["close"] != nil })
	got := a.all()
	if got[len(got)-1]["close"] != float64(1008) || got[len(got)-2]["error"] != "ERR_INVALID_SESSION" {
		t.Errorf("frames %v; want the session error and close 1008", got)
	}
	b := &captureSink{}
	connect(t, hub, ConnSpec{UID: "ua", SessionID: "live", Room: "r", Sink: b})
	waitFor(t, func() bool { return len(b.all()) == 1 })
	time.Sleep(50 * time.Millisecond)
	if got := b.all(); len(got) != 1 || got[0]["type"] != "system" {
		t.Errorf("another session's socket got %v", got)
	}
}
