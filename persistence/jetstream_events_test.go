package persistence_test

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"

	"github.com/pandachat/pandachat/persistence"
)

// A recall in the same batch as its target: the content never reaches the stream.
func TestJetStreamRecallInSameBatchNeverStored(t *testing.T) {
	s := openJetStream(t, 1, 0, persistence.NextPrefix())
	appendAll(t, s, "r", []persistence.Message{{ID: 1, Data: chat(1, "a", "secret"), CID: "c1"}, recall(2, 1, "a")})
	raw, err := persistence.SharedNodes(t, 1)[0].JetStream().Stream(context.Background(), s.StreamName())
	if err != nil {
		t.Fatal(err)
	}
	m, err := raw.GetLastMsgForSubject(context.Background(), s.RoomSubject("r"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(m.Data, []byte("secret")) {
		t.Errorf("the stored entry holds the recalled content: %q", m.Data)
	}
	got, err := s.MessagesAfter("r", 0, 10)
	if err != nil || len(got) != 2 || !bytes.Equal(got[0].Data, stub(1, "a")) || got[0].CID != "c1" {
		t.Fatalf("MessagesAfter = %v, %v; want the stub with cid c1, then the recall", got, err)
	}
}

// A writer that dies between storing a batch with events and applying their
// effects: the first read on any node applies them before it answers, and
// clears the mark; the next writer goes on from there.
func TestJetStreamEffectsOfACrashedWriter(t *testing.T) {
	for _, n := range []int{1, 3} {
		t.Run(fmt.Sprintf("nodes=%d", n), func(t *testing.T) {
			prefix := persistence.NextPrefix()
			var s []*persistence.JetStream
			for i := range n {
				s = append(s, openJetStream(t, n, i, prefix))
			}
			a, b := s[0], s[n-1]
			appendAll(t, a, "r", []persistence.Message{
				{ID: 1, Data: chat(1, "a", "secret"), CID: "c1"}, {ID: 2, Data: chat(2, "b", "hi")},
			}, []persistence.Message{react(3, 1, "b", `{"👍":1}`, `["👍"]`)})
			if err := a.StoreWithoutEffects("r", []persistence.Message{
				recall(4, 1, "a"), react(5, 2, "c", `{"❤️":1}`, `["❤️"]`),
			}); err != nil {
				t.Fatal(err)
			}
			if p, ok, err := b.PendingMark("r"); err != nil || !ok || p != 4 {
				t.Fatalf("pending mark = %d, %v, %v; want 4", p, ok, err)
			}
			// Readers on every node at once: each may apply the effects, all see them.
			var wg sync.WaitGroup
			for i, st := range s {
				wg.Add(1)
				go func() {
					defer wg.Done()
					got, err := st.MessagesAfter("r", 0, 10)
					if err != nil || len(got) != 5 {
						t.Errorf("node %d MessagesAfter = %v, %v; want 1..5", i+1, ids(got), err)
					} else if !bytes.Equal(got[0].Data, stub(1, "a")) || got[0].CID != "c1" {
						t.Errorf("node %d message 1 = %s cid %q; want the stub, cid c1", i+1, got[0].Data, got[0].CID)
					}
				}()
			}
			wg.Wait()
			if _, ok, err := b.PendingMark("r"); err != nil || ok {
				t.Errorf("pending mark after the reads: found %v, %v; want cleared", ok, err)
			}
			checkReactions(t, b, "r", 1, "b", "", "")
			checkReactions(t, b, "r", 2, "c", `{"❤️":1}`, `["❤️"]`)
			p := history(t, b, "r", 100, 10, persistence.HistoryQuery{UID: "c", Reactions: true})
			if got := pageIDs(p); !reflect.DeepEqual(got, []uint64{2}) || string(p.Items[0].Counts) != `{"❤️":1}` {
				t.Errorf("History = %v %+v; want [2] with its reaction", got, p.Items)
			}
			// Another node takes the room over and goes on.
			checkLastID(t, b, "r", 5)
			appendAll(t, b, "r", []persistence.Message{react(6, 2, "c", "", "")})
			checkReactions(t, a, "r", 2, "c", "", "")
		})
	}
}

// A writer that dies after raising the mark but before its entry is stored:
// reads are not held up, the mark stays until a writer stores those ids, and
// that writer's batch settles it.
func TestJetStreamMarkWithoutEntry(t *testing.T) {
	s := openJetStream(t, 1, 0, persistence.NextPrefix())
	appendAll(t, s, "r", []persistence.Message{{ID: 1, Data: chat(1, "a", "x")}})
	if err := s.MarkPendingOnly("r", 2, 2); err != nil {
		t.Fatal(err)
	}
	if got, err := s.MessagesAfter("r", 0, 10); err != nil || len(got) != 1 {
		t.Fatalf("MessagesAfter = %v, %v", ids(got), err)
	}
	if p, ok, err := s.PendingMark("r"); err != nil || !ok || p != 2 {
		t.Fatalf("mark above the last id = %d, %v, %v; want it kept at 2", p, ok, err)
	}
	appendAll(t, s, "r", msgs("r", 2, 3))
	appendAll(t, s, "r", []persistence.Message{react(4, 1, "b", `{"👍":1}`, `["👍"]`)})
	if _, ok, err := s.PendingMark("r"); err != nil || ok {
		t.Errorf("mark after a batch with events: found %v, %v; want cleared", ok, err)
	}
	checkReactions(t, s, "r", 1, "b", `{"👍":1}`, `["👍"]`)
}

// A batch stored as several entries: a reader between them applies what is
// stored but keeps the mark until the whole batch is, so that a writer dying
// before the last entry's effects leaves them pending too.
func TestJetStreamMarkOfABatchInFlight(t *testing.T) {
	s := openJetStream(t, 1, 0, persistence.NextPrefix())
	appendAll(t, s, "r", []persistence.Message{{ID: 1, Data: chat(1, "a", "secret")}, {ID: 2, Data: chat(2, "a", "y")}})
	if err := s.MarkPendingOnly("r", 3, 4); err != nil {
		t.Fatal(err)
	}
	if err := s.PublishOnly("r", []persistence.Message{recall(3, 1, "a")}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.MessagesAfter("r", 0, 1); err != nil || len(got) != 1 || !bytes.Equal(got[0].Data, stub(1, "a")) {
		t.Fatalf("MessagesAfter between the entries = %v, %v; want the stub", got, err)
	}
	if p, ok, err := s.PendingMark("r"); err != nil || !ok || p != 3 {
		t.Fatalf("mark between the entries = %d, %v, %v; want it kept at 3", p, ok, err)
	}
	if err := s.PublishOnly("r", []persistence.Message{react(4, 2, "b", `{"👍":1}`, `["👍"]`)}); err != nil {
		t.Fatal(err)
	}
	checkReactions(t, s, "r", 2, "b", `{"👍":1}`, `["👍"]`)
	if _, ok, err := s.PendingMark("r"); err != nil || ok {
		t.Errorf("mark after the whole batch: found %v, %v; want cleared", ok, err)
	}
}

// Effects written on one node are read on the others; read positions marked
// on three nodes at once all count, and the highest wins.
func TestJetStreamEventsAcrossNodes(t *testing.T) {
	s := threeStores(t)
	appendAll(t, s[0], "r", []persistence.Message{{ID: 1, Data: chat(1, "a", "x")}, react(2, 1, "b", `{"👍":1}`, `["👍"]`)})
	checkReactions(t, s[2], "r", 1, "b", `{"👍":1}`, `["👍"]`)
	checkLastID(t, s[1], "r", 2)
	appendAll(t, s[1], "r", []persistence.Message{recall(3, 1, "a")})
	p := history(t, s[2], "r", 10, 10, persistence.HistoryQuery{Recalled: true, Reactions: true})
	if got := pageIDs(p); !reflect.DeepEqual(got, []uint64{1}) || !bytes.Equal(p.Items[0].Data, stub(1, "a")) || p.Items[0].Counts != nil {
		t.Errorf("History on node 3 = %v %+v; want the stub of 1 without reactions", got, p.Items)
	}

	var wg sync.WaitGroup
	for i := range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			room := fmt.Sprintf("room%d", i%10)
			if err := s[i%3].MarkRead([]persistence.ReadMark{{UID: "u", Room: room, ID: uint64(i)}, {UID: "v", Room: "x", ID: uint64(i)}}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	got, err := s[1].ReadPositions("u")
	var want []persistence.ReadPosition
	for r := range 10 {
		want = append(want, persistence.ReadPosition{Room: fmt.Sprintf("room%d", r), ID: uint64(20 + r)})
	}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("ReadPositions(u) = %+v, %v; want %+v", got, err, want)
	}
	if id, err := s[0].ReadPosition("v", "x"); err != nil || id != 29 {
		t.Errorf("ReadPosition(v, x) = %d, %v; want 29", id, err)
	}
}

// Trimming deletes the records of trimmed blocks and the values below the
// first kept id from the block that holds it.
func TestJetStreamTrimEffects(t *testing.T) {
	s := openJetStream(t, 1, 0, persistence.NextPrefix())
	var batch []persistence.Message
	for id := uint64(1); id <= 600; id++ {
		batch = append(batch, persistence.Message{ID: id, Data: chat(id, "a", "m")})
	}
	appendAll(t, s, "r", batch, []persistence.Message{
		react(601, 10, "b", `{"👍":1}`, `["👍"]`),
		react(602, 300, "b", `{"👍":1}`, `["👍"]`),
		react(603, 520, "b", `{"👍":1}`, `["👍"]`),
		recall(604, 599, "a"),
	})
	before, err := s.EffectKeys("r")
	if err != nil || len(before) != 7 { // counts and own of blocks 0, 1, 2; the recall of block 2
		t.Fatalf("effect keys = %v, %v", before, err)
	}
	if _, err := s.TrimMessages("r", 301); err != nil {
		t.Fatal(err)
	}
	after, err := s.EffectKeys("r")
	if err != nil || len(after) != 5 {
		t.Errorf("effect keys after the trim = %v, %v; want those of blocks 1 and 2", after, err)
	}
	checkReactions(t, s, "r", 300, "b", "", "")
	checkReactions(t, s, "r", 520, "b", `{"👍":1}`, `["👍"]`)
	if got, err := s.MessagesAfter("r", 598, 1); err != nil || len(got) != 1 || !bytes.Equal(got[0].Data, stub(599, "a")) {
		t.Errorf("recalled 599 after the trim = %v, %v", got, err)
	}
}

// BenchmarkJetStreamEvents measures what events cost on JetStream: a replay of
// 50 messages (the pending mark and the recall record are read with them), a
// batch of 16 messages, with one reaction and without, and a History page of
// 50 with reactions.
func BenchmarkJetStreamEvents(b *testing.B) {
	for _, n := range []int{1, 3} {
		open := func(b *testing.B) *persistence.JetStream { return openJetStream(b, n, n-1, persistence.NextPrefix()) }
		fill := func(b *testing.B, s *persistence.JetStream) {
			var batch []persistence.Message
			for id := uint64(1); id <= 1000; id++ {
				batch = append(batch, persistence.Message{ID: id, Data: chat(id, "a", "hello there")})
			}
			if err := s.AppendMessages("r", batch); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(fmt.Sprintf("nodes=%d/replay50", n), func(b *testing.B) {
			s := open(b)
			fill(b, s)
			for b.Loop() {
				if got, err := s.MessagesAfter("r", 900, 50); err != nil || len(got) != 50 {
					b.Fatal(len(got), err)
				}
			}
		})
		for _, withEvent := range []bool{false, true} {
			b.Run(fmt.Sprintf("nodes=%d/batch16/reaction=%v", n, withEvent), func(b *testing.B) {
				s := open(b)
				fill(b, s)
				next := uint64(1000)
				for b.Loop() {
					batch := make([]persistence.Message, 16)
					for i := range batch {
						next++
						batch[i] = persistence.Message{ID: next, Data: chat(next, "a", "hello there")}
					}
					if withEvent {
						batch[15] = react(next, next-1, "b", `{"👍":1}`, `["👍"]`)
					}
					if err := s.AppendMessages("r", batch); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		b.Run(fmt.Sprintf("nodes=%d/history50", n), func(b *testing.B) {
			s := open(b)
			fill(b, s)
			if err := s.AppendMessages("r", []persistence.Message{react(1001, 990, "b", `{"👍":1}`, `["👍"]`)}); err != nil {
				b.Fatal(err)
			}
			q := persistence.HistoryQuery{UID: "b", Recalled: true, Reactions: true}
			for b.Loop() {
				if p, err := s.History("r", 2000, 50, q); err != nil || len(p.Items) != 50 {
					b.Fatal(len(p.Items), err)
				}
			}
		})
	}
}
