package actors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/nats-io/nats.go"

	"github.com/pandachat/pandachat/cluster"
	"github.com/pandachat/pandachat/internal/faultstore"
	"github.com/pandachat/pandachat/persistence"
	"github.com/pandachat/pandachat/protocol"
)

// testCluster is a cluster whose placement the test decides: which nodes are
// live and which node owns each room. Its hubs share one real NATS server; a
// node without a hub is played by the test on the subjects of nodes.go.
type testCluster struct {
	node  *cluster.Node
	nc    *nats.Conn
	mu    sync.Mutex
	live  []string
	owner map[string]string // room → owner, as given (it may be "")
}

func newTestCluster(t *testing.T, live ...string) *testCluster {
	t.Helper()
	node, err := cluster.Start(cluster.Options{Name: "nats", Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	return &testCluster{node: node, nc: node.Conn(), live: live, owner: map[string]string{}}
}

// jetStream opens a store on the cluster's JetStream, as a node does: each
// one a writer of its own, which the stream's checks keep apart.
func (c *testCluster) jetStream(t *testing.T) *persistence.JetStream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := persistence.OpenJetStream(ctx, c.node.JetStream(), persistence.JetStreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// place sets the live nodes and, in pairs, rooms and their owners.
func (c *testCluster) place(live []string, roomOwner ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.live = slices.Clone(live)
	for i := 0; i+1 < len(roomOwner); i += 2 {
		c.owner[roomOwner[i]] = roomOwner[i+1]
	}
}

func (c *testCluster) hub(t *testing.T, name string, store persistence.Store) *Hub {
	t.Helper()
	return c.hubWith(t, name, Options{Store: store, Rate: Rate{Off: true}, ConnectRate: Rate{Off: true}})
}

func (c *testCluster) hubWith(t *testing.T, name string, o Options) *Hub {
	t.Helper()
	o.Nodes = testNode{c, name}
	h := NewHub(o)
	t.Cleanup(func() { h.Shutdown(5 * time.Second) })
	return h
}

// testNode is one node's view of the test's cluster (Options.Nodes).
type testNode struct {
	c    *testCluster
	name string
}

func (n testNode) Name() string { return n.name }

func (n testNode) Live() []string {
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	return slices.Clone(n.c.live)
}

func (n testNode) Owner(room string) string {
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	return n.c.owner[room]
}

func (n testNode) Conn() *nats.Conn { return n.c.nc }

// publish says m on subject as another node would.
func (c *testCluster) publish(t *testing.T, subject string, m relayMsg) {
	t.Helper()
	b, err := json.Marshal(&m)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.nc.Publish(subject, b); err != nil {
		t.Fatal(err)
	}
}

// listen subscribes to subject; next gives what comes on it, in order.
func (c *testCluster) listen(t *testing.T, subject string) *nats.Subscription {
	t.Helper()
	sub, err := c.nc.SubscribeSync(subject)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	return sub
}

func next(t *testing.T, sub *nats.Subscription) *nats.Msg {
	t.Helper()
	m, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("nothing on %s: %v", sub.Subject, err)
	}
	return m
}

// nextRelay is the next relayMsg on sub that skip does not pass over.
func nextRelay(t *testing.T, sub *nats.Subscription, skip func(*relayMsg) bool) *relayMsg {
	t.Helper()
	for {
		m := next(t, sub)
		rm := &relayMsg{}
		if err := json.Unmarshal(m.Data, rm); err != nil {
			t.Fatalf("%s: %q: %v", m.Subject, m.Data, err)
		}
		if skip == nil || !skip(rm) {
			return rm
		}
	}
}

// record is a stored text message of uid, as another node's room writes it.
func record(id uint64, uid, content string) []byte {
	return protocol.AppendRecord(nil, &protocol.Record{ID: id, Number: 1, Time: time.Now().UnixMilli(),
		UID: uid, NickName: uid, Kind: protocol.KindText, Content: content})
}

// stored writes ids from..to of room to the store as another node would and
// returns them as the entries of its batch.
func stored(t *testing.T, s persistence.Store, room string, from, to uint64, uid, content string) []relayEntry {
	t.Helper()
	var msgs []persistence.Message
	var entries []relayEntry
	for id := from; id <= to; id++ {
		data := record(id, uid, content)
		msgs = append(msgs, persistence.Message{ID: id, Data: data})
		entries = append(entries, relayEntry{ID: id, Data: data})
	}
	if err := s.AppendMessages(room, msgs); err != nil {
		t.Fatal(err)
	}
	return entries
}

// exactly waits until s holds n frames and returns them; more than n fails.
func exactly(t *testing.T, s *captureSink, n int) []map[string]any {
	t.Helper()
	waitFor(t, func() bool { return len(s.all()) >= n })
	got := s.all()
	if len(got) != n {
		t.Fatalf("got %d frames, want %d: %v", len(got), n, got)
	}
	return got
}

// frameIDs are the ids of frames' messages, with their types and contents.
func frameIDs(fs []map[string]any) []string {
	var out []string
	for _, f := range fs {
		if id, ok := f["id"].(float64); ok {
			s := f["type"].(string) + ":" + strings.TrimRight(strings.TrimRight(jsonNum(id), "0"), ".")
			if c, ok := f["content"].(string); ok && len(c) < 20 {
				s += ":" + c
			}
			if cid, ok := f["cid"].(string); ok {
				s += ":" + cid
			}
			out = append(out, s)
		} else {
			b, _ := json.Marshal(f)
			out = append(out, string(b))
		}
	}
	return out
}

func jsonNum(f float64) string {
	b, _ := json.Marshal(f)
	return string(b) + "."
}

func checkIDs(t *testing.T, what string, fs []map[string]any, want ...string) {
	t.Helper()
	if got := frameIDs(fs); !slices.Equal(got, want) {
		t.Errorf("%s: got %q, want %q", what, got, want)
	}
}

// A follower forwards its member's post to the owner, which stores it; the
// echo (with its cid) and everyone's copy come with the owner's batch. A
// re-sent cid is answered by the owner with the original, nothing stored.
func TestFollowerForwardsToOwner(t *testing.T) {
	tc := newTestCluster(t, "a", "b")
	tc.place([]string{"a", "b"}, "r", "a")
	store := persistence.NewMemory()
	ha, hb := tc.hub(t, "a", store), tc.hub(t, "b", store)
	sa, sb := &captureSink{}, &captureSink{}
	ca := connect(t, ha, ConnSpec{UID: "ua", NickName: "A", Room: "r", Sink: sa})
	exactly(t, sa, 1)
	cb := connect(t, hb, ConnSpec{UID: "ub", NickName: "B", Room: "r", Sink: sb})
	exactly(t, sb, 1)

	cb.Receive([]byte(`{"text":true,"content":"from b","cid":"c1"}`), false)
	checkIDs(t, "b's echo", exactly(t, sb, 2)[1:], "user:1:from b:c1")
	got := exactly(t, sa, 2)[1]
	checkIDs(t, "a's copy", []map[string]any{got}, "remote:1:from b")
	if got["uid"] != "ub" || got["nickName"] != "B" {
		t.Errorf("a's copy %v: want ub's name on it", got)
	}
	ca.Receive(text("from a"), false)
	checkIDs(t, "a's echo", exactly(t, sa, 3)[2:], "user:2:from a")
	checkIDs(t, "b's copy", exactly(t, sb, 3)[2:], "remote:2:from a")

	cb.Receive([]byte(`{"text":true,"content":"from b","cid":"c1"}`), false) // again
	checkIDs(t, "b's echo of the re-sent cid", exactly(t, sb, 4)[3:], "user:1:from b:c1")
	if last, _ := store.LastID("r"); last != 2 {
		t.Errorf("store's last id %d after a re-sent cid, want 2", last)
	}
	msgs, _ := store.MessagesAfter("r", 0, 10)
	if len(msgs) != 2 || uidOf(msgs[0].Data) != "ub" || msgs[0].CID != "c1" || uidOf(msgs[1].Data) != "ua" {
		t.Errorf("stored %v", msgs)
	}
	time.Sleep(50 * time.Millisecond)
	exactly(t, sa, 3) // nothing for a
}

// The owner's answers as a follower sees them, the owner played by the test:
// a refusal goes to the sender, "moved" and no responders are asked again,
// an answer that is not one refuses the post, and with no owner at all the
// post is refused at once.
func TestForwardAnswers(t *testing.T) {
	tc := newTestCluster(t, "b", "x")
	tc.place([]string{"b", "x"}, "r", "x")
	store := persistence.NewMemory()
	hb := tc.hub(t, "b", store)
	sb := &captureSink{}
	cb := connect(t, hb, ConnSpec{UID: "ub", NickName: "B", AvatarURL: "/av", Room: "r", Sink: sb, V2: true, Base: "https://b"})
	exactly(t, sb, 1)
	fwd := tc.listen(t, subjectForward+"x.r")
	request := func(want string) (*nats.Msg, fwdPost) {
		t.Helper()
		m := next(t, fwd)
		var f fwdPost
		if err := json.Unmarshal(m.Data, &f); err != nil {
			t.Fatal(err)
		}
		if f.Content != want {
			t.Fatalf("forwarded %+v, want content %q", f, want)
		}
		return m, f
	}
	answer := func(m *nats.Msg, reply string) {
		t.Helper()
		if err := m.Respond([]byte(reply)); err != nil {
			t.Fatal(err)
		}
	}

	// A refusal.
	cb.Receive([]byte(`{"text":true,"content":"one","cid":"e1"}`), false)
	m, f := request("one")
	want := fwdPost{Node: "b", Member: cb.pid.Id, UID: "ub", Nick: "B", Avatar: "/av", V2: true, Base: "https://b",
		Kind: protocol.KindText, HasCID: true, CID: "e1", Content: "one"}
	if f != want {
		t.Errorf("forwarded %+v, want %+v", f, want)
	}
	answer(m, `{"err":"too much"}`)
	got := exactly(t, sb, 2)[1]
	if got["type"] != "error" || got["error"] != protocol.ErrUnavailable || got["cid"] != "e1" || !strings.Contains(got["message"].(string), "too much") {
		t.Errorf("after a refusal: %v", got)
	}

	// Moved: asked again, then stored; the echo comes with the batch.
	cb.Receive([]byte(`{"react":1,"emoji":"👍","cid":"m1"}`), false)
	m, f = request("")
	if f.Kind != protocol.KindReact || f.Target != 1 || f.Emoji != "👍" {
		t.Errorf("forwarded reaction %+v", f)
	}
	answer(m, `{"moved":true}`)
	m, _ = request("")
	if string(m.Data) != string(mustJSON(t, f)) {
		t.Errorf("asked again with %s, want %s", m.Data, mustJSON(t, f))
	}
	react := protocol.AppendEvent(nil, &protocol.Event{ID: 1, Time: time.Now().UnixMilli(), Target: 1, UID: "ub", NickName: "B", Emoji: "👍", On: true})
	if err := store.AppendMessages("r", []persistence.Message{{ID: 1, Data: react, CID: "m1"}}); err != nil {
		t.Fatal(err)
	}
	ev := []relayEntry{{ID: 1, Data: react, CID: "m1", From: "b/" + cb.pid.Id, Event: true}}
	answer(m, `{"id":1}`)
	tc.publish(t, subjectRoom+"r.all", relayMsg{T: relayBatch, Node: "x", Msgs: ev, Split: true})
	got = exactly(t, sb, 3)[2]
	if got["type"] != "reaction" || got["cid"] != "m1" || got["id"] != float64(1) {
		t.Errorf("echo of the reaction: %v", got)
	}

	// No responders: asked again until the owner answers.
	fwd.Unsubscribe()
	tc.nc.Flush()
	cb.Receive([]byte(`{"text":true,"content":"two","cid":"n1"}`), false)
	time.Sleep(3 * reforwardAfter) // a few tries with nobody there
	if n := len(sb.all()); n != 3 {
		t.Fatalf("with no responders the sender got %v; want nothing yet", sb.all()[3:])
	}
	fwd = tc.listen(t, subjectForward+"x.r")
	m, _ = request("two")
	entries := stored(t, store, "r", 2, 2, "ub", "two")
	entries[0].CID, entries[0].From = "n1", "b/"+cb.pid.Id
	answer(m, `{"id":2}`)
	tc.publish(t, subjectRoom+"r.all", relayMsg{T: relayBatch, Node: "x", Msgs: entries})
	checkIDs(t, "after no responders", exactly(t, sb, 4)[3:], "user:2:two:n1")

	// An answer that is none.
	cb.Receive([]byte(`{"text":true,"content":"three","cid":"g1"}`), false)
	m, _ = request("three")
	answer(m, `garbage`)
	got = exactly(t, sb, 5)[4]
	if got["type"] != "error" || got["error"] != protocol.ErrUnavailable || got["cid"] != "g1" || !strings.Contains(got["message"].(string), "did not answer") {
		t.Errorf("after a garbled answer: %v", got)
	}

	// No owner: refused at once.
	counts := tc.listen(t, subjectCount+"r")
	tc.place([]string{"b"}, "r", "")
	nextRelay(t, counts, func(rm *relayMsg) bool { return rm.Node != "b" || rm.Event != "" }) // b's room saw the move
	cb.Receive([]byte(`{"text":true,"content":"four","cid":"z1"}`), false)
	got = exactly(t, sb, 6)[5]
	if got["type"] != "error" || got["cid"] != "z1" || !strings.Contains(got["message"].(string), "no node can take posts") {
		t.Errorf("with no owner: %v", got)
	}
	if _, err := fwd.NextMsg(50 * time.Millisecond); err == nil {
		t.Error("a post was forwarded with no owner")
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A follower delivers the owner's batches to its members in id order: what
// it missed before a batch is read from the store first, what it delivered
// already is skipped, and what is meant for another node or comes from
// itself is not its to deliver. A gap the store cannot fill closes the
// members (they come back with since).
func TestRelayedBatches(t *testing.T) {
	tc := newTestCluster(t, "b", "x")
	tc.place([]string{"b", "x"}, "r", "x")
	store := persistence.NewMemory()
	hb := tc.hub(t, "b", store)
	sb := &captureSink{}
	connect(t, hb, ConnSpec{UID: "ub", Room: "r", Sink: sb})
	exactly(t, sb, 1)
	batch := func(subject, node string, entries []relayEntry) {
		tc.publish(t, subjectRoom+"r."+subject, relayMsg{T: relayBatch, Node: node, Msgs: entries})
	}

	one := stored(t, store, "r", 1, 2, "ux", "a")
	batch("all", "x", one)
	checkIDs(t, "first batch", exactly(t, sb, 3)[1:], "remote:1:a", "remote:2:a")
	batch("all", "x", one)                          // again: delivered already
	batch("all", "x", []relayEntry{})               // empty
	three := stored(t, store, "r", 3, 5, "ux", "b") // 3 and 4 never came
	batch("all", "x", three[2:])                    // 5
	checkIDs(t, "a batch after a gap", exactly(t, sb, 6)[3:], "remote:3:b", "remote:4:b", "remote:5:b")
	six := stored(t, store, "r", 6, 6, "ux", "c") //
	batch("all", "x", append(three[1:], six...))  // 4, 5 and 6: only 6 is new
	checkIDs(t, "an overlapping batch", exactly(t, sb, 7)[6:], "remote:6:c")

	wrong := []relayEntry{{ID: 7, Data: record(7, "ux", "wrong")}}
	batch("y", "x", wrong)   // for node y's members
	batch("all", "b", wrong) // this node's own
	tc.publish(t, subjectRoom+"r.all", relayMsg{T: "?", Node: "x", Msgs: wrong})
	if err := tc.nc.Publish(subjectRoom+"r.all", []byte("not json")); err != nil {
		t.Fatal(err)
	}
	batch("all", "x", stored(t, store, "r", 7, 7, "ux", "right"))
	checkIDs(t, "after others' batches", exactly(t, sb, 8)[7:], "remote:7:right")

	// A recall: the stub replaces the tail's copy, which a reconnect replays.
	stub, ok := protocol.RecallStub(record(7, "ux", "right"))
	if !ok {
		t.Fatal("no stub")
	}
	recall := protocol.AppendEvent(nil, &protocol.Event{ID: 8, Time: time.Now().UnixMilli(), Target: 7, UID: "ux", NickName: "ux"})
	if err := store.AppendMessages("r", []persistence.Message{{ID: 8, Data: recall, Effect: &persistence.Effect{Target: 7, Recall: stub}}}); err != nil {
		t.Fatal(err)
	}
	tc.publish(t, subjectRoom+"r.all", relayMsg{T: relayBatch, Node: "x", Split: true,
		Msgs: []relayEntry{{ID: 8, Data: recall, Event: true, Target: 7, Recall: stub}}})
	batch("all", "x", stored(t, store, "r", 9, 9, "ux", "after"))
	checkIDs(t, "after a recall", exactly(t, sb, 9)[8:], "remote:9:after") // a member of version 1 gets no events
	again := &captureSink{}
	connect(t, hb, ConnSpec{UID: "uc", Room: "r", Sink: again, V2: true, Since: 6, HasSince: true})
	got := exactly(t, again, 4)
	if got[1]["id"] != float64(7) || got[1]["recalled"] != true || got[2]["type"] != "recall" || got[3]["id"] != float64(9) {
		t.Errorf("replay after a relayed recall: %v", got)
	}

	// The store holds less than the batch says came before it.
	batch("all", "x", []relayEntry{{ID: 12, Data: record(12, "ux", "far")}})
	if got := exactly(t, sb, 10)[9]; got["close"] != float64(protocol.CloseInternal) {
		t.Errorf("after a gap the store cannot fill: %v, want a close 1011", got)
	}
}

// A follower reads the store when a batch does not come: what was published
// before its room's subscription reached the other nodes, and a post the
// owner stored (its answer says under which id) whose batch is lost.
func TestGapChecks(t *testing.T) {
	tc := newTestCluster(t, "b", "x")
	tc.place([]string{"b", "x"}, "r", "x")
	store := persistence.NewMemory()
	hb := tc.hub(t, "b", store)
	sb := &captureSink{}
	cb := connect(t, hb, ConnSpec{UID: "ub", Room: "r", Sink: sb})
	exactly(t, sb, 1)
	stored(t, store, "r", 1, 1, "ux", "before")                           // published before b's subscription
	checkIDs(t, "at the start", exactly(t, sb, 2)[1:], "remote:1:before") // within gapWait

	fwd := tc.listen(t, subjectForward+"x.r")
	cb.Receive([]byte(`{"text":true,"content":"lost","cid":"l"}`), false)
	m := next(t, fwd)
	stored(t, store, "r", 2, 2, "ub", "lost")
	if err := m.Respond([]byte(`{"id":2}`)); err != nil {
		t.Fatal(err)
	}
	checkIDs(t, "a stored post whose batch is lost", exactly(t, sb, 3)[2:], "user:2:lost")
}

// waitPlacement waits until b's room has seen the live set change: it then
// says its count again, with no event.
func waitPlacement(t *testing.T, counts *nats.Subscription, node string) {
	t.Helper()
	nextRelay(t, counts, func(rm *relayMsg) bool { return rm.Node != node || rm.Event != "" })
}

// A room that moves here reads the store before its next post: what the old
// owner stored and never published is delivered first, and the cids it
// published are known here (a re-sent one gets its original).
func TestRoomMovesHere(t *testing.T) {
	tc := newTestCluster(t, "b", "x")
	tc.place([]string{"b", "x"}, "r", "x")
	store := persistence.NewMemory()
	hb := tc.hub(t, "b", store)
	sb := &captureSink{}
	cb := connect(t, hb, ConnSpec{UID: "ub", Room: "r", Sink: sb})
	exactly(t, sb, 1)
	first := stored(t, store, "r", 1, 1, "ub", "sent by b")
	first[0].CID, first[0].From = "k", "b/"+cb.pid.Id
	tc.publish(t, subjectRoom+"r.all", relayMsg{T: relayBatch, Node: "x", Msgs: first})
	checkIDs(t, "from x", exactly(t, sb, 2)[1:], "user:1:sent by b:k")
	stored(t, store, "r", 2, 3, "ux", "unpublished")

	counts := tc.listen(t, subjectCount+"r")
	tc.place([]string{"b"}, "r", "b")
	waitPlacement(t, counts, "b")
	cb.Receive([]byte(`{"text":true,"content":"here","cid":"h"}`), false)
	checkIDs(t, "after the move", exactly(t, sb, 5)[2:], "remote:2:unpublished", "remote:3:unpublished", "user:4:here:h")
	cb.Receive([]byte(`{"text":true,"content":"sent by b","cid":"k"}`), false)
	checkIDs(t, "a cid of the old owner's", exactly(t, sb, 6)[5:], "user:1:sent by b:k")
	if last, _ := store.LastID("r"); last != 4 {
		t.Errorf("last id %d, want 4", last)
	}
}

// A room that moves away delivers what the new owner stored before the move
// was seen here, and forwards its next post to the new owner.
func TestRoomMovesAway(t *testing.T) {
	tc := newTestCluster(t, "b")
	tc.place([]string{"b"}, "r", "b")
	store := persistence.NewMemory()
	hb := tc.hub(t, "b", store)
	sb := &captureSink{}
	cb := connect(t, hb, ConnSpec{UID: "ub", Room: "r", Sink: sb})
	exactly(t, sb, 1)
	cb.Receive(text("mine"), false)
	checkIDs(t, "b's own", exactly(t, sb, 2)[1:], "user:1:mine")

	stored(t, store, "r", 2, 2, "ux", "new owner's")
	counts := tc.listen(t, subjectCount+"r")
	fwd := tc.listen(t, subjectForward+"x.r")
	tc.place([]string{"b", "x"}, "r", "x")
	waitPlacement(t, counts, "b")
	checkIDs(t, "after the move", exactly(t, sb, 3)[2:], "remote:2:new owner's")
	cb.Receive(text("next"), false)
	var f fwdPost
	if err := json.Unmarshal(next(t, fwd).Data, &f); err != nil || f.Content != "next" {
		t.Errorf("forwarded %+v (%v), want the next post", f, err)
	}
	if last, _ := store.LastID("r"); last != 2 {
		t.Errorf("last id %d: b stored after the move", last)
	}
}

// An owner that hears a batch of another writer (placement moved and back,
// or it was paused) reads the store at once and delivers what it missed.
func TestOwnerHearsAnotherWriter(t *testing.T) {
	tc := newTestCluster(t, "b", "x")
	tc.place([]string{"b", "x"}, "r", "b")
	store := faultstore.New(persistence.NewMemory())
	hb := tc.hub(t, "b", store)
	sb := &captureSink{}
	cb := connect(t, hb, ConnSpec{UID: "ub", Room: "r", Sink: sb, V2: true})
	exactly(t, sb, 1)
	cb.Receive(text("mine"), false)
	exactly(t, sb, 2)
	old := stored(t, store, "r", 2, 3, "ux", "x's")
	tc.publish(t, subjectRoom+"r.all", relayMsg{T: relayBatch, Node: "x", Msgs: old[:1]}) // 2: not all that is there
	checkIDs(t, "read back", exactly(t, sb, 4)[2:], "remote:2:x's", "remote:3:x's")
	reads := store.Calls(faultstore.LastID)
	tc.publish(t, subjectRoom+"r.all", relayMsg{T: relayBatch, Node: "x", Msgs: old})  // nothing new: no read
	tc.publish(t, subjectRoom+"r.all", relayMsg{T: relayTyping, Node: "x", UID: "ux"}) // heard after it
	exactly(t, sb, 5)
	cb.Receive(text("next"), false)
	checkIDs(t, "then", exactly(t, sb, 6)[5:], "user:4:next")
	if n := store.Calls(faultstore.LastID) - reads; n != 0 {
		t.Errorf("%d reads of the last id after a batch the room had", n)
	}
}

// Counts: each node says how many members it has (with who joined or left);
// the others add them to the online count and send presence frames; a node
// that leaves the live set takes its count with it.
func TestCountsAndPresence(t *testing.T) {
	tc := newTestCluster(t, "b", "x")
	tc.place([]string{"b", "x"}, "r", "x", "q", "x")
	start := tc.listen(t, subjectStart)
	hb := tc.hub(t, "b", persistence.NewMemory())
	var said nodeStarted
	if m := next(t, start); json.Unmarshal(m.Data, &said) != nil || said.Node != "b" || said.Epoch == 0 {
		t.Errorf("a starting node says %q, want its name and run", m.Data)
	}
	counts := tc.listen(t, subjectCount+"*")
	sb := &captureSink{}
	cb := connect(t, hb, ConnSpec{UID: "ub", NickName: "B", Room: "r", Sink: sb, Presence: true})
	exactly(t, sb, 1)
	if got := nextRelay(t, counts, nil); got.T != relayCount || got.Node != "b" || got.N != 1 || got.Event != "join" || got.UID != "ub" || got.Nick != "B" {
		t.Errorf("b's count on a join: %+v", got)
	}

	count := func(room string, n int, event string) {
		tc.publish(t, subjectCount+room, relayMsg{T: relayCount, Node: "x", N: n, Event: event, UID: "ux", Nick: "X"})
	}
	count("r", 2, "join")
	got := exactly(t, sb, 2)[1]
	if got["type"] != "presence" || got["num"] != float64(3) || got["event"] != "join" || got["uid"] != "ux" || got["nickName"] != "X" {
		t.Errorf("presence of x's joiner: %v", got)
	}
	tc.publish(t, subjectCount+"r", relayMsg{T: relayCount, Node: "b", N: 9})  // its own: not counted
	tc.publish(t, subjectCount+"r", relayMsg{T: relayTyping, Node: "x", N: 9}) // no count
	count("q", 4, "")                                                          // heard after those
	waitFor(t, func() bool { return systemNum(t, hb, "q") == 5 })              // a room that starts after it
	exactly(t, sb, 2)
	c2 := &captureSink{}
	cc := connect(t, hb, ConnSpec{UID: "uc", Room: "r", Sink: c2})
	if got := exactly(t, c2, 1)[0]; got["num"] != float64(4) {
		t.Errorf("a joiner's count: %v, want 4 (b, c and x's 2)", got)
	}
	if got := exactly(t, sb, 3)[2]; got["num"] != float64(4) {
		t.Errorf("presence of c: %v", got)
	}
	cc.Closed()
	exactly(t, sb, 4)

	count("r", 0, "leave")
	got = exactly(t, sb, 5)[4]
	if got["type"] != "presence" || got["num"] != float64(1) || got["event"] != "leave" {
		t.Errorf("presence of x's leaver: %v", got)
	}
	count("r", 2, "")
	waitFor(t, func() bool { return systemNum(t, hb, "r") == 4 })
	tc.place([]string{"b"}, "r", "b", "q", "b") // x is down: its members are gone
	waitFor(t, func() bool { return systemNum(t, hb, "r") == 2 && systemNum(t, hb, "q") == 1 })

	for {
		if rm := nextRelay(t, counts, nil); rm.Node == "b" && rm.Event == "leave" {
			break
		}
	}
	cb.Closed()
	rm := nextRelay(t, counts, func(rm *relayMsg) bool { return rm.Node != "b" || rm.Event != "leave" || rm.UID != "ub" })
	if rm.N != 0 || rm.Nick != "B" {
		t.Errorf("b's count when its last member left: %+v", rm)
	}
	count("q", 3, "") // gone again with the node's restart
	waitFor(t, func() bool { return systemNum(t, hb, "q") == 4 })
	if err := tc.nc.Publish(subjectStart, mustJSON(t, nodeStarted{Node: "x", Epoch: 1})); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return systemNum(t, hb, "q") == 1 })
}

// Frames for one member of this node (the owner's answer to a forwarded
// post) go to that member only; typing notices go both ways.
func TestDirectFramesAndTyping(t *testing.T) {
	tc := newTestCluster(t, "b", "x")
	tc.place([]string{"b", "x"}, "r", "x")
	hb := tc.hub(t, "b", persistence.NewMemory())
	s1, s2 := &captureSink{}, &captureSink{}
	c1 := connect(t, hb, ConnSpec{UID: "u1", NickName: "one", Room: "r", Sink: s1, V2: true})
	exactly(t, s1, 1)
	connect(t, hb, ConnSpec{UID: "u2", Room: "r", Sink: s2, V2: true})
	exactly(t, s2, 1)
	rooms := tc.listen(t, subjectRoom+"r.*")

	frame := protocol.TextFrame(protocol.ErrorFrame(protocol.ErrUnavailable, "for one", nil))
	direct := func(subject, to string, frames ...[]byte) {
		tc.publish(t, subjectRoom+"r."+subject, relayMsg{T: relayDirect, Node: "x", To: to, Frames: frames})
	}
	direct("y", c1.pid.Id, frame) // another node's
	direct("b", "nobody", frame)  // no such member
	direct("b", c1.pid.Id)        // nothing
	direct("b", c1.pid.Id, frame) // this one
	if got := exactly(t, s1, 2)[1]; got["message"] != "for one" {
		t.Errorf("direct frame: %v", got)
	}

	tc.publish(t, subjectRoom+"r.all", relayMsg{T: relayTyping, Node: "x", UID: "ux", Nick: "X"})
	for _, got := range []map[string]any{exactly(t, s1, 3)[2], exactly(t, s2, 2)[1]} {
		if got["type"] != "typing" || got["uid"] != "ux" || got["nickName"] != "X" {
			t.Errorf("typing from x: %v", got)
		}
	}
	c1.Receive([]byte(`{"typing":true}`), false)
	rm := nextRelay(t, rooms, func(rm *relayMsg) bool { return rm.Node != "b" })
	if rm.T != relayTyping || rm.UID != "u1" || rm.Nick != "one" {
		t.Errorf("b's typing notice: %+v", rm)
	}
	if got := exactly(t, s2, 3)[2]; got["type"] != "typing" || got["uid"] != "u1" {
		t.Errorf("typing of a member here: %v", got)
	}
	exactly(t, s1, 3)
}

// The owner takes the posts other nodes forward (the test plays node x): it
// stores them, answers with the id once stored, and publishes the batch with
// the sender named; what it tells the sender alone (the echo of a re-sent
// cid, a refusal) goes to the sender's node. A node that does not own the
// room says so; a post it cannot read is refused.
func TestOwnerTakesForwardedPosts(t *testing.T) {
	tc := newTestCluster(t, "a", "x")
	tc.place([]string{"a", "x"}, "r", "a", "idle", "a", "elsewhere", "x")
	fs := faultstore.New(persistence.NewMemory())
	events := &eventCounter{}
	ha := tc.hubWith(t, "a", Options{Store: fs, Rate: Rate{Off: true}, Observer: events})
	sa := &captureSink{}
	connect(t, ha, ConnSpec{UID: "ua", Room: "r", Sink: sa})
	exactly(t, sa, 1)
	toAll := tc.listen(t, subjectRoom+"r.all")
	toX := tc.listen(t, subjectRoom+"r.x")
	send := func(room string, f fwdPost) fwdReply {
		t.Helper()
		m, err := tc.nc.Request(subjectForward+"a."+room, mustJSON(t, f), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var r fwdReply
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	post := fwdPost{Node: "x", Member: "m1", UID: "ux", Nick: "X", Kind: protocol.KindText, HasCID: true, CID: "f1", Content: "hello"}

	if r := send("r", post); r != (fwdReply{ID: 1}) {
		t.Errorf("answer %+v, want id 1", r)
	}
	got := exactly(t, sa, 2)[1]
	if got["type"] != "remote" || got["id"] != float64(1) || got["uid"] != "ux" || got["nickName"] != "X" || got["content"] != "hello" {
		t.Errorf("a's member got %v", got)
	}
	rm := nextRelay(t, toAll, nil)
	if rm.T != relayBatch || rm.Node != "a" || len(rm.Msgs) != 1 || rm.Msgs[0].ID != 1 || rm.Msgs[0].CID != "f1" || rm.Msgs[0].From != "x/m1" {
		t.Errorf("a's batch: %+v", rm)
	}

	// The same cid again: the answer names its original, which x echoes
	// itself, in order with what x delivered; nothing goes to x directly
	// (the next thing there is the refusal below).
	if r := send("r", post); r != (fwdReply{ID: 1, Again: true}) {
		t.Errorf("answer to a re-sent cid %+v, want its original (id 1, again)", r)
	}

	// A failed write: the refusal goes to x's member.
	fs.FailWrites(1)
	post.CID, post.Content = "f2", "lost"
	if r := send("r", post); r != (fwdReply{}) {
		t.Errorf("answer to a failed write %+v, want none stored", r)
	}
	rm = nextRelay(t, toX, nil)
	sink := &captureSink{}
	sink.Send(rm.Frames...)
	if rm.To != "m1" || len(sink.all()) != 1 || sink.all()[0]["error"] != protocol.ErrUnavailable || sink.all()[0]["cid"] != "f2" {
		t.Errorf("refusal: %+v %v", rm, sink.all())
	}
	exactly(t, sa, 2)

	if r := send("elsewhere", post); r != (fwdReply{Moved: true}) {
		t.Errorf("a post for a room of x's: %+v, want moved", r)
	}
	m, err := tc.nc.Request(subjectForward+"a.r", []byte("{"), 10*time.Second)
	if err != nil || string(m.Data) != `{"err":"bad forwarded post"}` {
		t.Errorf("a garbled post: %s (%v)", m.Data, err)
	}
	if r := send(strings.Repeat("z", 65), post); r.Err != "bad forwarded post" {
		t.Errorf("a post for a bad room name: %+v", r)
	}
	// A room with no members here takes posts too, with mentions and all.
	post.CID, post.Content, post.Mentions = "", "hi", "ua"
	if r := send("idle", post); r != (fwdReply{ID: 1}) {
		t.Errorf("a post for a room with no members here: %+v", r)
	}
	msgs, _ := fs.MessagesAfter("idle", 0, 5)
	if len(msgs) != 1 || !strings.Contains(string(msgs[0].Data), `"mentions":["ua"]`) {
		t.Errorf("stored %v", msgs)
	}
	if n := events.count(EventMention); n != 1 {
		t.Errorf("%d posts with mentions counted, want 1 (the others had none)", n)
	}
}

// eventCounter counts the events a hub reports.
type eventCounter struct {
	NopObserver
	mu sync.Mutex
	n  map[string]int
}

func (c *eventCounter) Event(kind string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[kind]++
}

func (c *eventCounter) count(kind string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[kind]
}

// batchSink keeps the ids of each Send: a room sends a member one batch per call.
type batchSink struct {
	mu      sync.Mutex
	batches [][]uint64
	n       int
}

func (s *batchSink) Send(frames ...[]byte) bool {
	c := &captureSink{}
	c.Send(frames...)
	var ids []uint64
	for _, f := range c.all() {
		if id, ok := f["id"].(float64); ok {
			ids = append(ids, uint64(id))
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batches = append(s.batches, ids)
	s.n += len(ids)
	return true
}

func (s *batchSink) Close(int, string, ...[]byte) {}

func (s *batchSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// A batch bigger than relayChunk is published in pieces, in order, each as
// big as fits: 64 messages of 4 KiB fill one exactly.
func TestPublishBatchInPieces(t *testing.T) {
	tc := newTestCluster(t, "a", "x")
	tc.place([]string{"a", "x"}, "r", "a")
	fs := faultstore.New(persistence.NewMemory())
	ha := tc.hub(t, "a", fs)
	sa := &batchSink{}
	ca := connect(t, ha, ConnSpec{UID: "ua", NickName: "A", Room: "r", Sink: sa})
	waitFor(t, func() bool { sa.mu.Lock(); defer sa.mu.Unlock(); return len(sa.batches) == 1 })
	toAll := tc.listen(t, subjectRoom+"r.all")

	const size, posts = relayChunk / 64, 150
	post := func(id uint64) []byte { // a post stored in size bytes under id
		rec := protocol.Record{ID: id, Number: 1, Time: time.Now().UnixMilli(), UID: "ua", NickName: "A", Kind: protocol.KindText}
		pad := size - len(protocol.AppendRecord(nil, &rec))
		rec.Content = strings.Repeat("中", pad/3) + strings.Repeat("x", pad%3)
		if n := len(protocol.AppendRecord(nil, &rec)); n != size {
			t.Fatalf("record of %d bytes, want %d", n, size)
		}
		return mustJSON(t, map[string]any{"text": true, "content": rec.Content})
	}
	fs.StallWrites()
	ca.Receive(post(1), false)
	within(t, fs.Stalled())
	for id := uint64(2); id <= posts; id++ {
		ca.Receive(post(id), false)
	}
	fs.Release()
	waitFor(t, func() bool { return sa.count() == posts })

	var want [][]uint64 // each batch in pieces of 64
	sa.mu.Lock()
	for _, b := range sa.batches[1:] {
		for len(b) > 0 {
			n := min(len(b), 64)
			want = append(want, b[:n])
			b = b[n:]
		}
	}
	sa.mu.Unlock()
	var got [][]uint64
	for len(got) < len(want) {
		rm := nextRelay(t, toAll, nil)
		var piece []uint64
		for _, e := range rm.Msgs {
			piece = append(piece, e.ID)
			if len(e.Data) != size {
				t.Fatalf("message %d of %d bytes, want %d", e.ID, len(e.Data), size)
			}
		}
		got = append(got, piece)
	}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("pieces %v, want %v", got, want)
	}
}

// A node that is not among the live nodes (its heartbeat is not stored) is
// cut off: after a failed write it refuses posts without asking the store,
// whose calls would only wait out their timeouts, until it is live again.
func TestCutOffNodeRefusesWithoutReading(t *testing.T) {
	tc := newTestCluster(t, "x")
	tc.place([]string{"x"}, "r", "b") // b still owns r: it has not seen itself go
	fs := faultstore.New(persistence.NewMemory())
	hb := tc.hub(t, "b", fs)
	sb := &captureSink{}
	cb := connect(t, hb, ConnSpec{UID: "ub", Room: "r", Sink: sb})
	exactly(t, sb, 1)
	cb.Receive(text("one"), false)
	checkIDs(t, "a write that works", exactly(t, sb, 2)[1:], "user:1:one")

	reads := fs.Calls("LastID") + fs.Calls("MessagesAfter")
	fs.FailWrites(1)
	cb.Receive(text("two"), false)
	if got := exactly(t, sb, 3)[2]; got["error"] != protocol.ErrUnavailable || !strings.Contains(got["message"].(string), "cannot read its store") {
		t.Errorf("a failed write: %v", got)
	}
	time.Sleep(retryBroken + 50*time.Millisecond) // the room may ask again
	cb.Receive(text("three"), false)
	if got := exactly(t, sb, 4)[3]; got["error"] != protocol.ErrUnavailable || !strings.Contains(got["message"].(string), "room unavailable") {
		t.Errorf("a post while cut off: %v", got)
	}
	if n := fs.Calls("LastID") + fs.Calls("MessagesAfter") - reads; n != 0 {
		t.Errorf("%d store reads while cut off, want none", n)
	}

	counts := tc.listen(t, subjectCount+"r")
	tc.place([]string{"b", "x"})
	waitPlacement(t, counts, "b")
	time.Sleep(retryBroken + 50*time.Millisecond)
	cb.Receive(text("four"), false)
	checkIDs(t, "live again", exactly(t, sb, 5)[4:], "user:2:four")
}

// A room that stops stops hearing the other nodes: its subscription goes.
func TestStoppedRoomUnsubscribes(t *testing.T) {
	tc := newTestCluster(t, "b", "x")
	tc.place([]string{"b", "x"}, "r", "x")
	hb := tc.hubWith(t, "b", Options{Store: persistence.NewMemory(), Rate: Rate{Off: true}, IdleRoom: 10 * time.Millisecond})
	before := tc.nc.NumSubscriptions()
	for range 2 {
		sb := &captureSink{}
		cb := connect(t, hb, ConnSpec{UID: "ub", Room: "r", Sink: sb})
		exactly(t, sb, 1)
		if n := tc.nc.NumSubscriptions(); n != before+1 {
			t.Errorf("%d subscriptions with the room, want %d", n, before+1)
		}
		cb.Closed()
		waitFor(t, func() bool { return hb.Rooms() == 0 })
		waitFor(t, func() bool { return tc.nc.NumSubscriptions() == before })
	}
}

// The owner's batch marks events and carries a recall's target and stub, so
// that the other nodes' tails recall their copy too; a plain message is no
// event. Publishing that works logs nothing.
func TestOwnerPublishesEvents(t *testing.T) {
	tc := newTestCluster(t, "a", "x")
	tc.place([]string{"a", "x"}, "r", "a")
	logs := &syncBuffer{}
	ha := tc.hubWith(t, "a", Options{Store: persistence.NewMemory(), Rate: Rate{Off: true}, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	sa := &captureSink{}
	ca := connect(t, ha, ConnSpec{UID: "ua", Room: "r", Sink: sa, V2: true})
	exactly(t, sa, 1)
	toAll := tc.listen(t, subjectRoom+"r.all")
	ca.Receive(text("oops"), false)
	rm := nextRelay(t, toAll, nil)
	if len(rm.Msgs) != 1 || rm.Msgs[0].Event || rm.Msgs[0].Target != 0 || rm.Msgs[0].Recall != nil || rm.Split {
		t.Errorf("a message's batch: %+v", rm)
	}
	ca.Receive([]byte(`{"recall":1}`), false)
	rm = nextRelay(t, toAll, nil)
	if len(rm.Msgs) != 1 || !rm.Msgs[0].Event || rm.Msgs[0].Target != 1 || !rm.Split {
		t.Fatalf("a recall's batch: %+v", rm)
	}
	if !strings.Contains(string(rm.Msgs[0].Recall), `"recalled":true`) {
		t.Errorf("the recall's stub %s", rm.Msgs[0].Recall)
	}
	if strings.Contains(logs.String(), "could not tell") || strings.Contains(logs.String(), "takes no forwarded posts") {
		t.Errorf("logs:\n%s", logs)
	}
}

// A follower whose start could not read the store takes the first batch it
// hears as where history ends: what came before it is not delivered.
func TestFollowerStartsWithoutTheStore(t *testing.T) {
	tc := newTestCluster(t, "b", "x")
	tc.place([]string{"b", "x"}, "r", "x")
	fs := faultstore.New(persistence.NewMemory())
	hb := tc.hub(t, "b", fs)
	fs.FailReads(1) // the room's LastID at its start
	sb := &captureSink{}
	connect(t, hb, ConnSpec{UID: "ub", Room: "r", Sink: sb})
	exactly(t, sb, 1)
	entries := stored(t, fs, "r", 1, 6, "ux", "m")
	tc.publish(t, subjectRoom+"r.all", relayMsg{T: relayBatch, Node: "x", Msgs: entries[4:]})
	checkIDs(t, "the first batch", exactly(t, sb, 3)[1:], "remote:5:m", "remote:6:m")
	tc.publish(t, subjectRoom+"r.all", relayMsg{T: relayBatch, Node: "x", Msgs: stored(t, fs, "r", 7, 7, "ux", "n")})
	checkIDs(t, "the next", exactly(t, sb, 4)[3:], "remote:7:n")
}

// The cids of relayed batches are known to the end of their window when the
// room moves here: one sent exactly cidWindow ago is still answered with its
// original, one a millisecond older is stored anew.
func TestRelayedCIDsToTheWindowsEnd(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	clock := &fakeClock{t: t0}
	tc := newTestCluster(t, "b", "x")
	tc.place([]string{"b", "x"}, "r", "x")
	store := persistence.NewMemory()
	hb := tc.hubWith(t, "b", Options{Store: store, Rate: Rate{Off: true}, Now: clock.now})
	sb := &captureSink{}
	cb := connect(t, hb, ConnSpec{UID: "ub", Room: "r", Sink: sb})
	exactly(t, sb, 1)
	var entries []relayEntry
	for i, at := range []time.Time{t0.Add(-cidWindow - time.Millisecond), t0.Add(-cidWindow)} {
		id := uint64(i + 1)
		data := protocol.AppendRecord(nil, &protocol.Record{ID: id, Number: 1, Time: at.UnixMilli(), UID: "ub", NickName: "ub", Kind: protocol.KindText, Content: "m"})
		cid := []string{"old", "edge"}[i]
		if err := store.AppendMessages("r", []persistence.Message{{ID: id, Data: data, CID: cid}}); err != nil {
			t.Fatal(err)
		}
		entries = append(entries, relayEntry{ID: id, Data: data, CID: cid})
	}
	tc.publish(t, subjectRoom+"r.all", relayMsg{T: relayBatch, Node: "x", Msgs: entries})
	exactly(t, sb, 3)

	counts := tc.listen(t, subjectCount+"r")
	tc.place([]string{"b"}, "r", "b")
	waitPlacement(t, counts, "b")
	cb.Receive([]byte(`{"text":true,"content":"m","cid":"edge"}`), false)
	checkIDs(t, "the cid at the window's end", exactly(t, sb, 4)[3:], "user:2:m:edge")
	cb.Receive([]byte(`{"text":true,"content":"m","cid":"old"}`), false)
	checkIDs(t, "the cid past it", exactly(t, sb, 5)[4:], "user:3:m:old")
}

// The registry keeps each node's count of each room for the rooms that start
// later: one node's count going to zero, or its node going down, leaves the
// other nodes' counts of that room.
func TestRegistryCountsPerNode(t *testing.T) {
	tc := newTestCluster(t, "b", "x", "y")
	tc.place([]string{"b", "x", "y"})
	hb := tc.hub(t, "b", persistence.NewMemory())
	count := func(room, node string, n int) {
		tc.publish(t, subjectCount+room, relayMsg{T: relayCount, Node: node, N: n})
	}
	// heard waits until the registry has taken what was published before:
	// a new room of marker's count starts with it.
	heard := func(marker string) {
		count(marker, "x", 5)
		waitFor(t, func() bool { return systemNum(t, hb, marker) == 6 })
	}
	count("p", "x", 2)
	count("p", "y", 3)
	count("p", "y", 0)
	heard("m1")
	if n := systemNum(t, hb, "p"); n != 3 {
		t.Errorf("a room that starts after y's count went to 0: num %v, want 3 (x's 2)", n)
	}

	count("p2", "x", 2)
	count("p2", "y", 3)
	heard("m2")
	tc.place([]string{"b", "y"})
	waitFor(t, func() bool { return systemNum(t, hb, "m2") == 1 }) // x's count gone there
	if n := systemNum(t, hb, "p2"); n != 4 {
		t.Errorf("a room that starts after x went down: num %v, want 4 (y's 3)", n)
	}
}

// A write that fails after it was stored, in a cluster: the room reads back
// the ids the store says it holds and, finding its own messages there,
// delivers them as any batch (the echo with its cid); of a batch stored in
// part, the part the store holds is delivered and the rest refused.
func TestFailedWriteThatStoredOurs(t *testing.T) {
	tc := newTestCluster(t, "b")
	tc.place([]string{"b"}, "r", "b")
	stalled, release := make(chan struct{}), make(chan struct{})
	hs := &hookStore{Store: persistence.NewMemory()}
	hs.append = func(call int, room string, msgs []persistence.Message, inner persistence.Store) error {
		switch call {
		case 1: // stored, then failed (an fsync, say)
			if err := inner.AppendMessages(room, msgs); err != nil {
				return err
			}
			return errors.New("stored, not synced")
		case 2:
			close(stalled)
			<-release
		case 3: // the first message stored, the rest not
			if err := inner.AppendMessages(room, msgs[:1]); err != nil {
				return err
			}
			return errors.New("the second transaction failed")
		}
		return inner.AppendMessages(room, msgs)
	}
	in := &inCounter{}
	hb := tc.hubWith(t, "b", Options{Store: hs, Rate: Rate{Off: true}, Observer: in})
	sb := &captureSink{}
	cb := connect(t, hb, ConnSpec{UID: "ub", Room: "r", Sink: sb})
	exactly(t, sb, 1)
	cb.Receive([]byte(`{"text":true,"content":"one","cid":"a"}`), false)
	checkIDs(t, "a write stored after all", exactly(t, sb, 2)[1:], "user:1:one:a")

	cb.Receive(text("two"), false)
	within(t, stalled)
	cb.Receive([]byte(`{"text":true,"content":"three","cid":"c"}`), false)
	cb.Receive([]byte(`{"text":true,"content":"four","cid":"d"}`), false)
	waitFor(t, func() bool { return in.n.Load() == 4 })
	time.Sleep(50 * time.Millisecond) // from the connection to the room's mailbox
	close(release)
	got := exactly(t, sb, 5)[2:]
	checkIDs(t, "the stalled write", got[:1], "user:2:two")
	var delivered, refused []map[string]any
	for _, f := range got[1:] {
		if f["type"] == "error" {
			refused = append(refused, f)
		} else {
			delivered = append(delivered, f)
		}
	}
	checkIDs(t, "a batch stored in part", delivered, "user:3:three:c")
	if len(refused) != 1 || refused[0]["error"] != protocol.ErrUnavailable || refused[0]["cid"] != "d" {
		t.Errorf("the part not stored: %v", refused)
	}
	if last, _ := hs.LastID("r"); last != 3 {
		t.Errorf("last id %d, want 3", last)
	}
}

// A room that only other nodes post to stops when idle, as any room: the
// forwarded posts it took are counted as the registry counted them.
func TestRoomOfForwardedPostsStops(t *testing.T) {
	tc := newTestCluster(t, "a", "x")
	tc.place([]string{"a", "x"}, "r", "a")
	ha := tc.hubWith(t, "a", Options{Store: persistence.NewMemory(), Rate: Rate{Off: true}, IdleRoom: 20 * time.Millisecond})
	for i := range 2 {
		m, err := tc.nc.Request(subjectForward+"a.r", mustJSON(t, fwdPost{Node: "x", Member: "m", UID: "ux", Kind: protocol.KindText, Content: "hi"}), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if string(m.Data) != fmt.Sprintf(`{"id":%d}`, i+1) {
			t.Fatalf("answer %s", m.Data)
		}
		waitFor(t, func() bool { return ha.Rooms() == 0 })
	}
}

// An owner that hears another node's batch while a batch of its own waits to
// be flushed (it was paused, and the others took the room over) must not read
// the store again before that batch is settled: its ids are taken, so it is
// refused whole, and a re-send of one of its cids is stored anew, never
// echoed as what the other node stored under that id.
func TestPendingBatchWhenAnotherWriterIsHeard(t *testing.T) {
	tc := newTestCluster(t, "b", "x")
	tc.place([]string{"b", "x"}, "r", "b")
	store := faultstore.New(tc.jetStream(t))
	hb := tc.hubWith(t, "b", Options{Store: store, Rate: Rate{Off: true}, TailSize: 1})
	sb := &captureSink{}
	cb := connect(t, hb, ConnSpec{UID: "ub", Room: "r", Sink: sb, V2: true})
	exactly(t, sb, 1)
	cb.Receive(text("one"), false)
	cb.Receive(text("two"), false)
	exactly(t, sb, 3)
	old := stored(t, tc.jetStream(t), "r", 3, 4, "ux", "x's") // the other node's, unknown to the room
	// A replay from the store (the tail holds one message) holds the room
	// while the rest queues in its mailbox in a known order.
	store.StallReads()
	connect(t, hb, ConnSpec{UID: "uc", Room: "r", Sink: &captureSink{}, Since: 0, HasSince: true})
	for m := range store.Stalled() {
		if m == faultstore.MessagesAfter {
			break
		}
	}
	room := roomPID(t, hb, "r")
	frames := 3
	handed := func() { // the conn actor handed on what came before: it answered a bad frame
		cb.Receive([]byte("{"), false)
		frames++
		exactly(t, sb, frames)
	}
	cb.Receive(textCID("k"), false) // id 3: pending
	cb.Receive(textCID("k"), false) // a re-send while it is pending
	handed()
	hb.system.Root.Send(room, &relayMsg{T: relayBatch, Node: "x", Msgs: old})
	cb.Receive(textCID("k"), false) // a re-send after the other node's batch
	handed()
	store.Release()
	waitFor(t, func() bool { return cb.InFlight() == 0 })
	for _, f := range sb.all() {
		if f["cid"] == "k" && f["type"] != "error" && f["content"] != "k" {
			t.Errorf("the echo of k is another message: %v", frameIDs([]map[string]any{f}))
		}
	}
	// Sent again once the room has read the store, k is stored after x's ids.
	for tries, echoed := 0, false; !echoed; tries++ {
		if tries == 100 {
			t.Fatal("k is never stored")
		}
		n := len(sb.all())
		cb.Receive(textCID("k"), false)
		waitFor(t, func() bool { return cb.InFlight() == 0 })
		for _, f := range sb.all()[n:] {
			echoed = echoed || f["cid"] == "k" && f["type"] == "user"
		}
		time.Sleep(50 * time.Millisecond)
	}
	msgs, err := store.MessagesAfter("r", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range msgs {
		var rec struct{ Content string }
		_ = json.Unmarshal(m.Data, &rec)
		got = append(got, fmt.Sprint(m.ID, ":", rec.Content))
	}
	if want := []string{"1:one", "2:two", "3:x's", "4:x's", "5:k"}; !slices.Equal(got, want) {
		t.Errorf("stored %q, want %q", got, want)
	}
}

// roomPID finds the actor of a started room (its id is the registry's child
// id with the room's prefix).
func roomPID(t *testing.T, h *Hub, name string) *actor.PID {
	t.Helper()
	prefix := "rooms/room-" + name + "-"
	for _, bucket := range h.system.ProcessRegistry.LocalPIDs.LocalPIDs {
		for id := range bucket.Items() {
			if strings.HasPrefix(id, prefix) {
				return actor.NewPID(h.system.Address(), id)
			}
		}
	}
	t.Fatalf("no actor for room %q", name)
	return nil
}

// A room that moves here reads the store at once and delivers what the old
// owner stored and never published, even if nobody posts.
func TestQuietRoomMovesHere(t *testing.T) {
	tc := newTestCluster(t, "b", "x")
	tc.place([]string{"b", "x"}, "r", "x")
	store := persistence.NewMemory()
	hb := tc.hub(t, "b", store)
	sb := &captureSink{}
	connect(t, hb, ConnSpec{UID: "ub", Room: "r", Sink: sb})
	exactly(t, sb, 1)
	stored(t, store, "r", 1, 2, "ux", "unpublished")
	counts := tc.listen(t, subjectCount+"r")
	tc.place([]string{"b"}, "r", "b")
	waitPlacement(t, counts, "b")
	checkIDs(t, "after the move, nobody posting", exactly(t, sb, 3)[1:], "remote:1:unpublished", "remote:2:unpublished")
}

// A room that moved away and back reads reactions again: the other owner may
// have stored some meanwhile, and counts built on a stale cache lose them.
func TestReactionsReadAgainAfterMovingBack(t *testing.T) {
	tc := newTestCluster(t, "b", "x")
	tc.place([]string{"b"}, "r", "b")
	store := persistence.NewMemory()
	hb := tc.hub(t, "b", store)
	sb := &captureSink{}
	cb := connect(t, hb, ConnSpec{UID: "ub", Room: "r", Sink: sb, V2: true})
	exactly(t, sb, 1)
	cb.Receive(text("m"), false)
	exactly(t, sb, 2)
	cb.Receive([]byte(`{"react":1,"emoji":"👍"}`), false)
	exactly(t, sb, 3) // b caches 1's reactions: 👍 1

	counts := tc.listen(t, subjectCount+"r")
	tc.place([]string{"b", "x"}, "r", "x")
	waitPlacement(t, counts, "b")
	react := protocol.AppendEvent(nil, &protocol.Event{ID: 3, Time: time.Now().UnixMilli(), Target: 1, UID: "ux", NickName: "X", Emoji: "👍", On: true})
	eff := &persistence.Effect{Target: 1, UID: "ux", Counts: []byte(`{"👍":2}`), Mine: []byte(`["👍"]`)}
	if err := store.AppendMessages("r", []persistence.Message{{ID: 3, Data: react, Effect: eff}}); err != nil {
		t.Fatal(err)
	}
	tc.publish(t, subjectRoom+"r.all", relayMsg{T: relayBatch, Node: "x", Msgs: []relayEntry{{ID: 3, Data: react, Event: true}}, Split: true})
	exactly(t, sb, 4)

	tc.place([]string{"b"}, "r", "b")
	waitPlacement(t, counts, "b")
	cb.Receive([]byte(`{"react":1,"emoji":"❤️"}`), false)
	exactly(t, sb, 5)
	got, _, err := store.Reactions("r", 1, "ub")
	var c map[string]int
	if err != nil || json.Unmarshal(got, &c) != nil || c["👍"] != 2 || c["❤️"] != 1 {
		t.Errorf("counts %s (%v); want 👍 2 and ❤️ 1", got, err)
	}
}

// A batch whose relay was lost reaches the members here within a ping
// interval, even if the room then goes quiet and no later batch shows the gap.
func TestLostRelayInAQuietRoomIsRead(t *testing.T) {
	tc := newTestCluster(t, "b", "x")
	tc.place([]string{"b", "x"}, "r", "x")
	store := persistence.NewMemory()
	hb := tc.hubWith(t, "b", Options{Store: store, Rate: Rate{Off: true}, PingInterval: 200 * time.Millisecond})
	sb := &captureSink{}
	connect(t, hb, ConnSpec{UID: "ub", Room: "r", Sink: sb})
	waitFor(t, func() bool { return len(ofType(sb.all(), "type", "system")) == 1 })
	time.Sleep(gapWait + 100*time.Millisecond) // past the check a new room makes
	stored(t, store, "r", 1, 2, "ux", "relay lost")
	waitFor(t, func() bool { return len(ids(sb.all())) == 2 })
	if got := ids(sb.all()); !sameIDs(got, seq(1, 2)) {
		t.Errorf("member got %v, want 1..2", got)
	}
}

// A recall that its owner read back from the store comes without the stub;
// the tail here still drops the recalled content, so replays never show it.
func TestRelayedReadBackRecallRecallsTheTail(t *testing.T) {
	tc := newTestCluster(t, "b", "x")
	tc.place([]string{"b", "x"}, "r", "x")
	hb := tc.hub(t, "b", persistence.NewMemory())
	sb := &captureSink{}
	connect(t, hb, ConnSpec{UID: "ub", Room: "r", Sink: sb, V2: true})
	exactly(t, sb, 1)
	tc.publish(t, subjectRoom+"r.all", relayMsg{T: relayBatch, Node: "x", Msgs: []relayEntry{{ID: 1, Data: record(1, "ux", "secret")}}})
	exactly(t, sb, 2)
	recall := protocol.AppendEvent(nil, &protocol.Event{ID: 2, Time: time.Now().UnixMilli(), Target: 1, UID: "ux", NickName: "ux"})
	tc.publish(t, subjectRoom+"r.all", relayMsg{T: relayBatch, Node: "x", Msgs: []relayEntry{{ID: 2, Data: recall, Event: true}}, Split: true})
	exactly(t, sb, 3)
	for _, v2 := range []bool{false, true} {
		s := &captureSink{}
		connect(t, hb, ConnSpec{UID: "uc", Room: "r", Sink: s, V2: v2, HasSince: true})
		waitFor(t, func() bool { return len(ofType(s.all(), "type", "system")) == 1 }) // the replay comes with it
		for _, f := range s.all() {
			if f["content"] == "secret" {
				t.Errorf("replay to a reader of version 2=%v shows the recalled content: %v", v2, f)
			}
		}
	}
}

// An owner that reads back what a failed write stored relays it with its
// cids: the other nodes know them if the room moves to them.
func TestReadBackBatchCarriesItsCIDs(t *testing.T) {
	tc := newTestCluster(t, "b", "x")
	tc.place([]string{"b", "x"}, "r", "b")
	fs := faultstore.New(persistence.NewMemory())
	hb := tc.hub(t, "b", fs)
	sb := &captureSink{}
	cb := connect(t, hb, ConnSpec{UID: "ub", Room: "r", Sink: sb})
	exactly(t, sb, 1)
	batches := tc.listen(t, subjectRoom+"r.all")
	fs.FailAfterCommit(1) // stored, the room told it failed
	fs.FailReads(1)       // and cannot ask what the store holds
	cb.Receive(textCID("k"), false)
	rm := nextRelay(t, batches, func(rm *relayMsg) bool { return rm.T != relayBatch })
	if len(rm.Msgs) != 1 || rm.Msgs[0].ID != 1 || rm.Msgs[0].CID != "k" {
		t.Errorf("relayed read-back batch %+v; want id 1 with cid k", rm.Msgs)
	}
}

// A message recalled before this node read it from the store (its relays were
// lost) never reaches readers of version 1, as in replays.
func TestCatchUpSkipsRecalledForVersion1(t *testing.T) {
	tc := newTestCluster(t, "b", "x")
	tc.place([]string{"b", "x"}, "r", "x")
	store := persistence.NewMemory()
	hb := tc.hub(t, "b", store)
	s1 := &captureSink{}
	connect(t, hb, ConnSpec{UID: "ub", Room: "r", Sink: s1})
	exactly(t, s1, 1)
	orig := record(1, "ux", "secret")
	stub, _ := protocol.RecallStub(orig)
	recall := protocol.AppendEvent(nil, &protocol.Event{ID: 2, Time: time.Now().UnixMilli(), Target: 1, UID: "ux", NickName: "ux"})
	if err := store.AppendMessages("r", []persistence.Message{{ID: 1, Data: orig}}); err != nil {
		t.Fatal(err)
	}
	if err := store.AppendMessages("r", []persistence.Message{{ID: 2, Data: recall, Effect: &persistence.Effect{Target: 1, Recall: stub}}}); err != nil {
		t.Fatal(err)
	}
	third := stored(t, store, "r", 3, 3, "ux", "after")
	tc.publish(t, subjectRoom+"r.all", relayMsg{T: relayBatch, Node: "x", Msgs: third}) // the gap is read first
	waitFor(t, func() bool { return len(ofType(s1.all(), "content", "after")) == 1 })
	if got := ids(s1.all()); !sameIDs(got, seq(3, 3)) {
		t.Errorf("a reader of version 1 got %v; want only 3 (1 is recalled, 2 is the recall)", got)
	}
}
