package persistence_test

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/pandachat/pandachat/persistence"
)

// TestStoreEvents runs the conformance suite of recalls, reactions, history
// pages and read positions on every Store. A store that does not support
// events (cluster mode, for now) must say so and refuse them clearly.
func TestStoreEvents(t *testing.T) {
	for _, impl := range implementations {
		t.Run(impl.name, func(t *testing.T) {
			for _, c := range []struct {
				name   string
				events bool // needs SupportsEvents
				run    func(*testing.T, persistence.Store)
			}{
				{"HistoryOfMessages", false, testHistoryOfMessages},
				{"Recall", true, testRecall},
				{"Reactions", true, testReactions},
				{"HistoryPassesOverEvents", true, testHistoryPassesOverEvents},
				{"EventsInLargeBatch", true, testEventsInLargeBatch},
				{"TrimReactions", true, testTrimReactions},
				{"ReadPositions", false, testReadPositions},
			} {
				t.Run(c.name, func(t *testing.T) {
					s := impl.open(t)
					if c.events && !s.SupportsEvents() {
						// Not a skip: what such a store must do is refuse events clearly.
						if impl.name == "badger" || impl.name == "memory" {
							t.Fatal("the single-node stores must support events")
						}
						if _, _, err := s.Reactions("r", 1, "u"); !errors.Is(err, persistence.ErrUnsupported) {
							t.Errorf("Reactions on a store without events = %v, want ErrUnsupported", err)
						}
						return
					}
					c.run(t, s)
				})
			}
		})
	}
}

// chat is a stored chat message of uid as the room encodes it.
func chat(id uint64, uid, content string) []byte {
	return fmt.Appendf(nil, `{"id":%d,"number":1,"time":1,"uid":%q,"nickName":"n","avatarUrl":"","text":true,"content":%q}`, id, uid, content)
}

func stub(id uint64, uid string) []byte {
	return fmt.Appendf(nil, `{"id":%d,"number":1,"time":1,"uid":%q,"nickName":"n","avatarUrl":"","recalled":true}`, id, uid)
}

func event(id, target uint64, kind string) []byte {
	return fmt.Appendf(nil, `{"type":%q,"id":%d,"time":1,"target":%d,"uid":"u","nickName":"n"}`, kind, id, target)
}

func recall(id, target uint64, uid string) persistence.Message {
	return persistence.Message{ID: id, Data: event(id, target, "recall"), Effect: &persistence.Effect{Target: target, Recall: stub(target, uid)}}
}

func react(id, target uint64, uid, counts, mine string) persistence.Message {
	e := &persistence.Effect{Target: target, UID: uid}
	if counts != "" {
		e.Counts = []byte(counts)
	}
	if mine != "" {
		e.Mine = []byte(mine)
	}
	return persistence.Message{ID: id, Data: event(id, target, "reaction"), Effect: e}
}

func checkReactions(t *testing.T, s persistence.Store, room string, target uint64, uid, counts, mine string) {
	t.Helper()
	c, m, err := s.Reactions(room, target, uid)
	if err != nil || string(c) != counts || string(m) != mine {
		t.Errorf("Reactions(%s, %d, %s) = %s, %s, %v; want %q, %q", room, target, uid, c, m, err, counts, mine)
	}
}

func pageIDs(p persistence.HistoryPage) []uint64 {
	out := []uint64{}
	for _, it := range p.Items {
		out = append(out, it.ID)
	}
	return out
}

func history(t *testing.T, s persistence.Store, room string, before uint64, limit int, q persistence.HistoryQuery) persistence.HistoryPage {
	t.Helper()
	p, err := s.History(room, before, limit, q)
	if err != nil {
		t.Fatalf("History(%s, %d, %d, %+v): %v", room, before, limit, q, err)
	}
	return p
}

func testHistoryOfMessages(t *testing.T, s persistence.Store) {
	appendAll(t, s, "r", msgs("r", 1, 4), msgs("r", 5, 10))
	for _, q := range []persistence.HistoryQuery{{}, {UID: "u", Recalled: true, Reactions: true}} {
		p := history(t, s, "r", math.MaxUint64, 3, q)
		if got := pageIDs(p); !reflect.DeepEqual(got, []uint64{8, 9, 10}) || p.LastID != 10 {
			t.Errorf("History(max, 3) = %v, last %d; want [8 9 10], last 10", got, p.LastID)
		}
		for _, it := range p.Items {
			if !bytes.Equal(it.Data, msgs("r", it.ID, it.ID)[0].Data) || it.Counts != nil || it.Mine != nil {
				t.Errorf("item %d = %s (%s, %s)", it.ID, it.Data, it.Counts, it.Mine)
			}
		}
		if got := pageIDs(history(t, s, "r", 3, 100, q)); !reflect.DeepEqual(got, []uint64{1, 2}) {
			t.Errorf("History(3, 100) = %v, want [1 2]", got)
		}
		for _, before := range []uint64{0, 1} {
			if p := history(t, s, "r", before, 10, q); len(p.Items) != 0 || p.LastID != 10 {
				t.Errorf("History(%d) = %v, last %d; want none, last 10", before, pageIDs(p), p.LastID)
			}
		}
		if p := history(t, s, "empty", math.MaxUint64, 10, q); len(p.Items) != 0 || p.LastID != 0 {
			t.Errorf("History of an empty room = %v, last %d", pageIDs(p), p.LastID)
		}
	}
}

func testRecall(t *testing.T, s persistence.Store) {
	appendAll(t, s, "r", []persistence.Message{
		{ID: 1, Data: chat(1, "a", "secret"), CID: "c1"},
		{ID: 2, Data: chat(2, "b", "hello")},
	})
	appendAll(t, s, "r", []persistence.Message{react(3, 1, "b", `{"👍":1}`, `["👍"]`)})
	appendAll(t, s, "r", []persistence.Message{{ID: 4, Data: chat(4, "b", "more")}, recall(5, 1, "a")})
	checkLastID(t, s, "r", 5)
	got, err := s.MessagesAfter("r", 0, 10)
	if err != nil || len(got) != 5 {
		t.Fatalf("MessagesAfter = %v, %v", ids(got), err)
	}
	if !bytes.Equal(got[0].Data, stub(1, "a")) || got[0].CID != "c1" {
		t.Errorf("recalled message = %s cid %q, want the stub with cid c1", got[0].Data, got[0].CID)
	}
	for _, m := range got {
		if bytes.Contains(m.Data, []byte("secret")) {
			t.Errorf("message %d still holds the recalled content: %s", m.ID, m.Data)
		}
	}
	if !bytes.Equal(got[1].Data, chat(2, "b", "hello")) || !bytes.Equal(got[4].Data, event(5, 1, "recall")) {
		t.Errorf("other messages changed: %s / %s", got[1].Data, got[4].Data)
	}
	if before, err := s.MessagesBefore("r", 2, 1); err != nil || len(before) != 1 || !bytes.Equal(before[0].Data, stub(1, "a")) {
		t.Errorf("MessagesBefore(2) = %v, %v; want the stub", before, err)
	}
	checkReactions(t, s, "r", 1, "b", "", "") // a recall takes the reactions with it
	// Recalling a message that is gone (trimmed) changes nothing else.
	appendAll(t, s, "r", []persistence.Message{recall(6, 99, "a")})
	if got, _ := s.MessagesAfter("r", 5, 10); len(got) != 1 || got[0].ID != 6 {
		t.Errorf("after recalling a missing message: %v", ids(got))
	}
}

func testReactions(t *testing.T, s persistence.Store) {
	appendAll(t, s, "r", []persistence.Message{{ID: 1, Data: chat(1, "a", "x")}, {ID: 2, Data: chat(2, "a", "y")}})
	checkReactions(t, s, "r", 1, "b", "", "")
	appendAll(t, s, "r", []persistence.Message{
		react(3, 1, "b", `{"👍":1}`, `["👍"]`),
		react(4, 1, "c", `{"👍":2}`, `["👍"]`),
		react(5, 1, "c", `{"👍":2,"❤️":1}`, `["👍","❤️"]`),
	})
	checkReactions(t, s, "r", 1, "b", `{"👍":2,"❤️":1}`, `["👍"]`)
	checkReactions(t, s, "r", 1, "c", `{"👍":2,"❤️":1}`, `["👍","❤️"]`)
	checkReactions(t, s, "r", 1, "a", `{"👍":2,"❤️":1}`, "")
	checkReactions(t, s, "r", 1, "", `{"👍":2,"❤️":1}`, "")
	checkReactions(t, s, "r", 2, "b", "", "")
	checkReactions(t, s, "other", 1, "b", "", "")
	// Taken back, down to none.
	appendAll(t, s, "r", []persistence.Message{react(6, 1, "b", `{"👍":1,"❤️":1}`, "")})
	appendAll(t, s, "r", []persistence.Message{react(7, 1, "c", "", "")})
	checkReactions(t, s, "r", 1, "b", "", "")
	checkReactions(t, s, "r", 1, "c", "", "")
	// Events are stored like messages, in the room's sequence.
	got, err := s.MessagesAfter("r", 2, 10)
	if err != nil || !reflect.DeepEqual(ids(got), []uint64{3, 4, 5, 6, 7}) || !bytes.Equal(got[0].Data, event(3, 1, "reaction")) {
		t.Errorf("events read back: %v, %v", ids(got), err)
	}
	for _, m := range got {
		if m.Effect != nil {
			t.Errorf("event %d read back with an effect", m.ID)
		}
	}
}

func testHistoryPassesOverEvents(t *testing.T, s persistence.Store) {
	appendAll(t, s, "r", []persistence.Message{
		{ID: 1, Data: chat(1, "a", "one")}, {ID: 2, Data: chat(2, "a", "two")}, {ID: 3, Data: chat(3, "b", "three")},
	})
	var evs []persistence.Message
	for id := uint64(4); id < 40; id++ { // a long run of events between two pages
		evs = append(evs, react(id, 3, "u", `{"👍":1}`, `["👍"]`))
	}
	appendAll(t, s, "r", evs, []persistence.Message{recall(40, 2, "a"), {ID: 41, Data: chat(41, "b", "four")}})
	q := persistence.HistoryQuery{UID: "u", Recalled: true, Reactions: true}
	p := history(t, s, "r", math.MaxUint64, 2, q)
	if got := pageIDs(p); !reflect.DeepEqual(got, []uint64{3, 41}) || p.LastID != 41 {
		t.Fatalf("History(max, 2) = %v last %d; want [3 41] last 41", got, p.LastID)
	}
	if it := p.Items[0]; string(it.Counts) != `{"👍":1}` || string(it.Mine) != `["👍"]` {
		t.Errorf("item 3 reactions = %s, %s", it.Counts, it.Mine)
	}
	if it := p.Items[1]; it.Counts != nil || it.Mine != nil {
		t.Errorf("item 41 reactions = %s, %s; want none", it.Counts, it.Mine)
	}
	p = history(t, s, "r", 3, 10, q)
	if got := pageIDs(p); !reflect.DeepEqual(got, []uint64{1, 2}) || !bytes.Equal(p.Items[1].Data, stub(2, "a")) {
		t.Errorf("History(3) = %v, want [1 2] with 2 recalled", got)
	}
	// Without Recalled the recalled message is passed over; without Reactions none are read.
	p = history(t, s, "r", math.MaxUint64, 10, persistence.HistoryQuery{UID: "u"})
	if got := pageIDs(p); !reflect.DeepEqual(got, []uint64{1, 3, 41}) {
		t.Errorf("History without recalled = %v, want [1 3 41]", got)
	}
	for _, it := range p.Items {
		if it.Counts != nil || it.Mine != nil {
			t.Errorf("item %d carries reactions without Reactions", it.ID)
		}
	}
	// Another reader sees the counts, not u's own.
	if p := history(t, s, "r", 4, 1, persistence.HistoryQuery{UID: "v", Reactions: true}); len(p.Items) != 1 || p.Items[0].Mine != nil || p.Items[0].Counts == nil {
		t.Errorf("History for v = %+v", p.Items)
	}
}

// testEventsInLargeBatch: a batch too big for one transaction, with events in
// it, stores every message and applies every effect.
func testEventsInLargeBatch(t *testing.T, s persistence.Store) {
	appendAll(t, s, "r", []persistence.Message{{ID: 1, Data: chat(1, "a", "gone"), CID: "k"}})
	big := strings.Repeat("x", 60<<10)
	var batch []persistence.Message
	for id := uint64(2); id <= 80; id++ {
		switch id {
		case 30:
			batch = append(batch, react(id, 1, "b", `{"🐼":1}`, `["🐼"]`))
		case 60:
			batch = append(batch, recall(id, 1, "a"))
		case 61:
			batch = append(batch, react(id, 2, "b", `{"🐼":1}`, `["🐼"]`))
		default:
			batch = append(batch, persistence.Message{ID: id, Data: chat(id, "a", big)})
		}
	}
	appendAll(t, s, "r", batch)
	checkLastID(t, s, "r", 80)
	got, err := s.MessagesAfter("r", 0, 100)
	if err != nil || len(got) != 80 {
		t.Fatalf("MessagesAfter = %d messages, %v", len(got), err)
	}
	if !bytes.Equal(got[0].Data, stub(1, "a")) || got[0].CID != "k" {
		t.Errorf("message 1 = %s cid %q, want recalled", got[0].Data, got[0].CID)
	}
	checkReactions(t, s, "r", 1, "b", "", "")
	checkReactions(t, s, "r", 2, "b", `{"🐼":1}`, `["🐼"]`)
}

func testTrimReactions(t *testing.T, s persistence.Store) {
	appendAll(t, s, "r", msgs("r", 1, 5), []persistence.Message{
		react(6, 2, "b", `{"👍":1}`, `["👍"]`), react(7, 4, "b", `{"👍":1}`, `["👍"]`), react(8, 5, "b", `{"👍":1}`, `["👍"]`),
	})
	if _, err := s.TrimMessages("r", 5); err != nil {
		t.Fatal(err)
	}
	checkReactions(t, s, "r", 2, "b", "", "")
	checkReactions(t, s, "r", 4, "b", "", "")
	checkReactions(t, s, "r", 5, "b", `{"👍":1}`, `["👍"]`)
	checkLastID(t, s, "r", 8)
}

func testReadPositions(t *testing.T, s persistence.Store) {
	err := s.MarkRead([]persistence.ReadMark{{UID: "u", Room: "b", ID: 5}})
	if errors.Is(err, persistence.ErrUnsupported) {
		for _, err := range []error{
			func() error { _, err := s.ReadPositions("u"); return err }(),
			func() error { _, err := s.ReadPosition("u", "b"); return err }(),
		} {
			if !errors.Is(err, persistence.ErrUnsupported) {
				t.Errorf("a store without read positions answered %v, want ErrUnsupported", err)
			}
		}
		return // refused clearly: all a store without them must do (not a skip)
	}
	if err != nil {
		t.Fatal(err)
	}
	mark := func(marks ...persistence.ReadMark) {
		t.Helper()
		if err := s.MarkRead(marks); err != nil {
			t.Fatal(err)
		}
	}
	pos := func(uid, room string, want uint64, found bool) {
		t.Helper()
		got, err := s.ReadPosition(uid, room)
		if found && (err != nil || got != want) || !found && !errors.Is(err, persistence.ErrNotFound) {
			t.Errorf("ReadPosition(%s, %s) = %d, %v; want %d (found %v)", uid, room, got, err, want, found)
		}
	}
	pos("u", "b", 5, true)
	pos("u", "a", 0, false)
	pos("v", "b", 0, false)
	mark(persistence.ReadMark{UID: "u", Room: "b", ID: 3})                // never backwards
	mark(persistence.ReadMark{UID: "u", Room: "b", ID: 9, OnlyNew: true}) // not new
	pos("u", "b", 5, true)
	mark(persistence.ReadMark{UID: "u", Room: "a", ID: 0, OnlyNew: true}, // a first join at 0
		persistence.ReadMark{UID: "u", Room: "c", ID: 7, OnlyNew: true},
		persistence.ReadMark{UID: "u", Room: "c", ID: 8},
		persistence.ReadMark{UID: "uu", Room: "x", ID: 1}, // a uid that starts with u's
		persistence.ReadMark{UID: "u", Room: "b", ID: 6})
	pos("u", "a", 0, true)
	pos("u", "c", 8, true)
	pos("u", "b", 6, true)
	got, err := s.ReadPositions("u")
	want := []persistence.ReadPosition{{Room: "a", ID: 0}, {Room: "b", ID: 6}, {Room: "c", ID: 8}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("ReadPositions(u) = %+v, %v; want %+v", got, err, want)
	}
	if got, err := s.ReadPositions("nobody"); err != nil || len(got) != 0 {
		t.Errorf("ReadPositions(nobody) = %+v, %v", got, err)
	}
	if err := s.MarkRead(nil); err != nil {
		t.Errorf("MarkRead(nil) = %v", err)
	}

	// A user's rooms are capped: a mark that would add one more is left out.
	var many []persistence.ReadMark
	for i := range persistence.MaxReadRooms - 1 {
		many = append(many, persistence.ReadMark{UID: "w", Room: fmt.Sprint("r", i), ID: 1})
	}
	mark(many...)
	last := fmt.Sprint("r", persistence.MaxReadRooms-1)
	mark(persistence.ReadMark{UID: "w", Room: last, ID: 1}, persistence.ReadMark{UID: "w", Room: "over", ID: 1}, persistence.ReadMark{UID: "w", Room: "r0", ID: 4})
	pos("w", last, 1, true)
	pos("w", "over", 0, false)
	pos("w", "r0", 4, true)
	mark(persistence.ReadMark{UID: "w", Room: "over2", ID: 1, OnlyNew: true})
	pos("w", "over2", 0, false)
	mark(persistence.ReadMark{UID: "w2", Room: "over", ID: 1})
	pos("w2", "over", 1, true)
	if got, err := s.ReadPositions("w"); err != nil || len(got) != persistence.MaxReadRooms {
		t.Errorf("ReadPositions(w): %d rooms, %v; want %d", len(got), err, persistence.MaxReadRooms)
	}
}
