package actors

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/pandachat/pandachat/persistence"
	"github.com/pandachat/pandachat/protocol"
)

func waitJoined(t *testing.T, st persistence.Store, uid, room string) {
	t.Helper()
	waitFor(t, func() bool { _, err := st.ReadPosition(uid, room); return err == nil })
}

// One batch with a recall, a reaction and a message with mentions reaches
// each member as its version and its user see it: events and mentions for
// version 2 only, "user" on the sender's connections, the cid on the sending
// one alone; version 1 members get the message without mentions and nothing
// else; ids stay one sequence.
func TestBatchWithEventsPerVersion(t *testing.T) {
	stalled, release := make(chan struct{}), make(chan struct{})
	hs := &hookStore{Store: badger(t)}
	hs.append = func(call int, room string, msgs []persistence.Message, inner persistence.Store) error {
		if call == 2 { // the batch after the first: posts meanwhile form the next one
			close(stalled)
			<-release
		}
		return inner.AppendMessages(room, msgs)
	}
	hub := NewHub(Options{Store: hs, Rate: Rate{Off: true}})
	defer hub.Shutdown(5 * time.Second)
	sinks := map[string]*captureSink{}
	conns := map[string]*Conn{}
	for _, m := range []struct {
		name, uid string
		v2        bool
	}{{"a", "ua", true}, {"a2", "ua", true}, {"a1", "ua", false}, {"b", "ub", false}, {"c", "uc", true}} {
		sinks[m.name] = &captureSink{}
		conns[m.name] = connect(t, hub, ConnSpec{UID: m.uid, NickName: m.name, Room: "r", Sink: sinks[m.name], V2: m.v2})
		waitFor(t, func() bool { return len(sinks[m.name].all()) == 1 })
	}
	waitJoined(t, hs, "ub", "r")
	conns["a"].Receive([]byte(`{"text":true,"content":"one","cid":"k1"}`), false)
	for _, s := range sinks {
		waitFor(t, func() bool { return len(s.all()) == 2 })
	}
	conns["b"].Receive(text("two"), false) // stalls in the store
	within(t, stalled)
	conns["a"].Receive([]byte(`{"react":1,"emoji":"👍","cid":"k2"}`), false)
	conns["a"].Receive([]byte(`{"text":true,"content":"hi b","mentions":["ub"],"cid":"k3"}`), false)
	conns["a"].Receive([]byte(`{"recall":1,"cid":"k4"}`), false)
	conns["a"].Receive([]byte(`{"react":1,"emoji":"❤️","cid":"k5"}`), false) // its recall is pending: refused
	time.Sleep(50 * time.Millisecond)                                        // the posts reach the room, which waits for the store
	close(release)
	waitFor(t, func() bool { return len(sinks["a"].all()) >= 7 })
	for _, s := range []*captureSink{sinks["a2"], sinks["c"]} {
		waitFor(t, func() bool { return len(s.all()) >= 6 })
	}
	for _, n := range []string{"a1", "b"} {
		waitFor(t, func() bool { return len(sinks[n].all()) >= 4 })
	}
	time.Sleep(50 * time.Millisecond)

	type f = map[string]any
	check := func(name string, want ...f) {
		t.Helper()
		got := sinks[name].all()[2:]
		if len(got) != len(want) {
			t.Fatalf("%s got %v, want %d frames", name, got, len(want))
		}
		for i, w := range want {
			for k, v := range w {
				if fmt.Sprint(got[i][k]) != fmt.Sprint(v) {
					t.Errorf("%s frame %d = %v: %s is %v, want %v", name, i, got[i], k, got[i][k], v)
				}
			}
		}
	}
	none := "<nil>"
	check("a", // the refusal goes out at once, the batch when it is stored
		f{"id": 2, "type": "remote"},
		f{"type": "error", "error": "ERR_NOT_ALLOWED", "cid": "k5", "id": none},
		f{"id": 3, "type": "reaction", "emoji": "👍", "on": true, "target": 1, "cid": "k2"},
		f{"id": 4, "type": "user", "mentions": "[ub]", "cid": "k3"},
		f{"id": 5, "type": "recall", "target": 1, "cid": "k4"})
	check("a2",
		f{"id": 2, "type": "remote"},
		f{"id": 3, "type": "reaction", "cid": none},
		f{"id": 4, "type": "user", "mentions": "[ub]", "cid": none},
		f{"id": 5, "type": "recall", "cid": none})
	check("c",
		f{"id": 2, "type": "remote"},
		f{"id": 3, "type": "reaction", "uid": "ua"},
		f{"id": 4, "type": "remote", "mentions": "[ub]"},
		f{"id": 5, "type": "recall"})
	check("a1",
		f{"id": 2, "type": "remote"},
		f{"id": 4, "type": "user", "content": "hi b", "mentions": none, "cid": none})
	check("b",
		f{"id": 2, "type": "user"},
		f{"id": 4, "type": "remote", "mentions": none})
	// The reaction went with the recall; the content is gone from the store.
	if counts, _, err := hs.Reactions("r", 1, "ua"); err != nil || counts != nil {
		t.Errorf("reactions of the recalled message: %s, %v", counts, err)
	}
	if msgs, _ := hs.MessagesAfter("r", 0, 1); len(msgs) != 1 || !protocol.StoredRecalled(msgs[0].Data) || msgs[0].CID != "k1" {
		t.Errorf("recalled message in the store: %+v", msgs)
	}
	// A replay from the tail shows the recall to version 2, hides it from version 1.
	r2, r1 := &captureSink{}, &captureSink{}
	connect(t, hub, ConnSpec{UID: "ud", Room: "r", Sink: r2, V2: true, Since: 0, HasSince: true})
	connect(t, hub, ConnSpec{UID: "ud", Room: "r", Sink: r1, Since: 0, HasSince: true})
	waitFor(t, func() bool { return len(r2.all()) == 6 && len(r1.all()) == 3 })
	if got := r2.all()[1]; got["recalled"] != true || got["content"] != nil {
		t.Errorf("replayed recalled message: %v", got)
	}
	if got := ids(r1.all()); !sameIDs(got, []uint64{2, 4}) {
		t.Errorf("version 1 replay ids %v, want [2 4]", got)
	}
}

// Typing notices go to the other members of version 2, never in a room of
// more than 100.
func TestTypingOnlyInSmallRooms(t *testing.T) {
	hub := NewHub(Options{Store: persistence.NewMemory(), Rate: Rate{Off: true}, MaxConnsPerUser: -1})
	defer hub.Shutdown(5 * time.Second)
	typer := connect(t, hub, ConnSpec{UID: "t", NickName: "typer", Room: "big", Sink: &captureSink{}, V2: true})
	watcher, old := &captureSink{}, &captureSink{}
	connect(t, hub, ConnSpec{UID: "w", Room: "big", Sink: watcher, V2: true})
	connect(t, hub, ConnSpec{UID: "o", Room: "big", Sink: old})
	others := make([]*countSink, 97)
	for i := range others { // 100 members in all
		others[i] = &countSink{}
		connect(t, hub, ConnSpec{UID: fmt.Sprint("x", i), Room: "big", Sink: others[i], V2: true})
	}
	waitFor(t, func() bool { return others[len(others)-1].frames.Load() == 1 })
	typer.Receive([]byte(`{"typing":true}`), false)
	waitFor(t, func() bool { return len(watcher.all()) == 2 })
	if got := watcher.all()[1]; got["type"] != "typing" || got["uid"] != "t" || got["nickName"] != "typer" {
		t.Fatalf("watcher got %v", got)
	}
	waitFor(t, func() bool { return others[0].frames.Load() == 2 })
	if n := len(old.all()); n != 1 {
		t.Errorf("a member of version 1 got %d frames", n)
	}
	extra := &countSink{} // the 101st
	connect(t, hub, ConnSpec{UID: "y", Room: "big", Sink: extra, V2: true})
	waitFor(t, func() bool { return extra.frames.Load() == 1 })
	typer2 := connect(t, hub, ConnSpec{UID: "t2", Room: "big", Sink: &captureSink{}, V2: true})
	waitFor(t, func() bool { return extra.frames.Load() == 1 && len(watcher.all()) == 2 })
	typer2.Receive([]byte(`{"typing":true}`), false)
	typer2.Receive(text("after"), false)
	waitFor(t, func() bool { return len(watcher.all()) == 3 })
	if got := watcher.all()[2]; got["type"] != "remote" || got["content"] != "after" {
		t.Errorf("in a room of 102 a typing notice went out: %v", got)
	}
}

// A reaction the store refuses is told to its sender and leaves no trace in
// what the room knows: the next toggle of the same emoji is "on" again.
func TestRefusedReactionLeavesNoState(t *testing.T) {
	hs := &hookStore{Store: badger(t)}
	hs.append = func(call int, room string, msgs []persistence.Message, inner persistence.Store) error {
		if call == 2 {
			return errors.New("disk on fire")
		}
		return inner.AppendMessages(room, msgs)
	}
	hub := NewHub(Options{Store: hs, Rate: Rate{Off: true}})
	defer hub.Shutdown(5 * time.Second)
	a := &captureSink{}
	ca := connect(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: a, V2: true})
	waitFor(t, func() bool { return len(a.all()) == 1 })
	ca.Receive(text("x"), false)
	waitFor(t, func() bool { return len(a.all()) == 2 })
	ca.Receive([]byte(`{"react":1,"emoji":"👍","cid":"r1"}`), false)
	waitFor(t, func() bool { return len(a.all()) == 3 })
	if got := a.all()[2]; got["error"] != "ERR_UNAVAILABLE" || got["cid"] != "r1" {
		t.Fatalf("refused reaction: %v", got)
	}
	ca.Receive([]byte(`{"react":1,"emoji":"👍","cid":"r1"}`), false) // the re-send stores it
	waitFor(t, func() bool { return len(a.all()) == 4 })
	if got := a.all()[3]; got["type"] != "reaction" || got["on"] != true || got["id"] != float64(2) {
		t.Fatalf("re-sent reaction: %v", got)
	}
	if counts, mine, err := hs.Reactions("r", 1, "ua"); err != nil || string(counts) != `{"👍":1}` || string(mine) != `["👍"]` {
		t.Errorf("stored reactions %s %s %v", counts, mine, err)
	}
}

// noEvents is a store that cannot apply events (cluster mode, for now).
type noEvents struct{ persistence.Store }

func (noEvents) SupportsEvents() bool { return false }

func TestEventsRefusedWithoutStoreSupport(t *testing.T) {
	hub := NewHub(Options{Store: noEvents{persistence.NewMemory()}, Rate: Rate{Off: true}})
	defer hub.Shutdown(5 * time.Second)
	a := &captureSink{}
	ca := connect(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: a, V2: true})
	waitFor(t, func() bool { return len(a.all()) == 1 })
	ca.Receive(text("x"), false)
	ca.Receive([]byte(`{"recall":1,"cid":"c"}`), false)
	ca.Receive(text("y"), false)
	waitFor(t, func() bool { return len(a.all()) == 4 })
	if got := ofType(a.all(), "type", "error"); len(got) != 1 || got[0]["error"] != "ERR_NOT_ALLOWED" || got[0]["cid"] != "c" {
		t.Errorf("recall on a store without events: %v", got)
	}
	if got := ids(a.all()); !sameIDs(got, []uint64{1, 2}) {
		t.Errorf("ids %v, want [1 2]: a refused event takes none", got)
	}
}
