package persistence_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pandachat/pandachat/persistence"
)

func TestMain(m *testing.M) {
	code := m.Run()
	persistence.StopSharedNodes()
	os.Exit(code)
}

// openJetStream opens a store of its own (a fresh Prefix) on the shared
// cluster of n nodes, on node i, with one copy per node.
func openJetStream(t testing.TB, n, i int, prefix string) *persistence.JetStream {
	t.Helper()
	nodes := persistence.SharedNodes(t, n)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := persistence.OpenJetStream(ctx, nodes[i].JetStream(), persistence.JetStreamOptions{Replicas: n, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// threeStores opens one store per node of the three-node cluster, all on the same data.
func threeStores(t *testing.T) [3]*persistence.JetStream {
	prefix := persistence.NextPrefix()
	var out [3]*persistence.JetStream
	for i := range out {
		out[i] = openJetStream(t, 3, i, prefix)
	}
	return out
}

// What one node writes, every node reads at once: messages, sessions, users,
// media, upload records, tickets.
func TestJetStreamAcrossNodes(t *testing.T) {
	s := threeStores(t)
	appendAll(t, s[0], "lobby", msgs("lobby", 1, 3))
	appendAll(t, s[1], "lobby", msgs("lobby", 4, 6)) // node 2 writes after reading the last id
	for i, st := range s {
		checkLastID(t, st, "lobby", 6)
		got, err := st.MessagesAfter("lobby", 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		checkIDs(t, fmt.Sprintf("node %d MessagesAfter", i+1), "lobby", got, 1, 6)
	}

	sess := persistence.Session{ID: "s-a", Skey: "k", UID: "u-a", Expires: future(time.Hour)}
	if err := s[0].PutLogin(persistence.User{UID: "u-a", OpenID: "o-a", Profile: persistence.Profile{NickName: "A"}}, sess); err != nil {
		t.Fatal(err)
	}
	if gs, gu, err := s[2].SessionUser("s-a"); err != nil || gs.Skey != "k" || gu.Profile.NickName != "A" {
		t.Errorf("node 3 SessionUser = %+v %+v %v", gs, gu, err)
	}
	if u, err := s[1].UserByOpenID("o-a"); err != nil || u.UID != "u-a" {
		t.Errorf("node 2 UserByOpenID = %+v %v", u, err)
	}
	if err := s[2].DeleteSession("s-a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s[0].Session("s-a"); !errors.Is(err, persistence.ErrNotFound) {
		t.Errorf("node 1 Session after node 3 deleted it: %v", err)
	}

	if err := s[1].PutMedia(persistence.Media{ID: "abc", Owner: "u-a", MIME: "image/png"}); err != nil {
		t.Fatal(err)
	}
	if m, err := s[0].Media("abc"); err != nil || m.Owner != "u-a" {
		t.Errorf("node 1 Media = %+v %v", m, err)
	}

	at := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, st := range s {
		if err := st.AddUpload("u-a", at, 10, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	if ups, err := s[2].Uploads("u-a", time.Time{}); err != nil || len(ups) != 1 || ups[0].Bytes != 30 {
		t.Errorf("uploads from three nodes = %v %v; want one record of 30 bytes", ups, err)
	}
}

// Concurrent uploads of one user on three nodes all count.
func TestJetStreamUploadsConcurrentAcrossNodes(t *testing.T) {
	s := threeStores(t)
	at := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s[i%3].AddUpload("u", at, 1, time.Time{}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if ups, err := s[0].Uploads("u", time.Time{}); err != nil || len(ups) != 1 || ups[0].Bytes != 30 {
		t.Errorf("Uploads = %v %v; want 30 bytes", ups, err)
	}
}

// First logins of one openId on three nodes at once end with one user, and a
// ticket taken on three nodes at once is taken once.
func TestJetStreamOneWinnerAcrossNodes(t *testing.T) {
	s := threeStores(t)
	const n = 30
	uids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u, _, err := s[i%3].LoginOpenID("o-race", persistence.User{UID: fmt.Sprintf("u-%d", i)}, nil,
				persistence.Session{ID: fmt.Sprintf("s-%d", i), Expires: future(time.Hour)})
			if err != nil {
				t.Error(err)
			}
			uids[i] = u.UID
		}()
	}
	wg.Wait()
	for i, uid := range uids {
		if uid != uids[0] {
			t.Fatalf("login %d got %s, login 0 got %s: one openId, two users", i, uid, uids[0])
		}
	}
	for round := range 5 {
		id := "tk-" + strconv.Itoa(round)
		if err := s[0].PutTicket(persistence.Ticket{ID: id, SessionID: "x", Expires: future(time.Minute)}); err != nil {
			t.Fatal(err)
		}
		var won atomic.Int32
		for i := range 9 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := s[i%3].TakeTicket(id); err == nil {
					won.Add(1)
				} else if !errors.Is(err, persistence.ErrNotFound) {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if won.Load() != 1 {
			t.Fatalf("round %d: %d takers got the ticket", round, won.Load())
		}
	}
}

// Two nodes that both think they own a room: the second writer of an id gets
// ErrConflict and its batch is not stored; after reading LastID again it goes
// on after the other's ids.
func TestJetStreamConflict(t *testing.T) {
	for _, n := range []int{1, 3} {
		t.Run(fmt.Sprintf("nodes=%d", n), func(t *testing.T) {
			prefix := persistence.NextPrefix()
			a, b := openJetStream(t, n, 0, prefix), openJetStream(t, n, n-1, prefix)
			checkLastID(t, a, "r", 0)
			checkLastID(t, b, "r", 0) // both saw the room empty
			appendAll(t, a, "r", msgs("r", 1, 2))

			// Same first id, other content: JetStream answers "duplicate" before
			// it checks the sequence; that must not pass as stored.
			mine := []persistence.Message{{ID: 1, Data: []byte(`{"id":1,"by":"b"}`)}}
			if err := b.AppendMessages("r", mine); !errors.Is(err, persistence.ErrConflict) {
				t.Fatalf("stale writer with the same ids: %v, want ErrConflict", err)
			}
			// Without reading the last id again the store refuses a reused id itself.
			if err := b.AppendMessages("r", mine); !errors.Is(err, persistence.ErrConflict) {
				t.Fatalf("second try: %v, want ErrConflict", err)
			}
			checkLastID(t, b, "r", 2)
			appendAll(t, b, "r", msgs("r", 3, 3))
			// a's tail is from before b's id 3: a gap to it until a reads the room again.
			if err := a.AppendMessages("r", msgs("r", 4, 4)); err != nil {
				t.Fatalf("writer whose tail is old, with the next id: %v", err)
			}
			checkLastID(t, b, "r", 4)
			checkLastID(t, a, "r", 4)

			// A write the store did not see (a fresh msg id): wrong last sequence, 10071.
			other := []persistence.Message{{ID: 5, Data: []byte(`{"id":5,"by":"other"}`)}}
			raw := persistence.EncodeEntry(other)
			m := &nats.Msg{Subject: a.RoomSubject("r"), Data: raw, Header: nats.Header{"Panda-First": {"5"}, "Panda-Last": {"5"}}}
			if _, err := persistence.SharedNodes(t, n)[0].JetStream().PublishMsg(context.Background(), m); err != nil {
				t.Fatal(err)
			}
			if err := a.AppendMessages("r", msgs("r", 5, 5)); !errors.Is(err, persistence.ErrConflict) {
				t.Fatalf("writer behind another's entry: %v, want ErrConflict", err)
			}
			checkLastID(t, a, "r", 5)
			appendAll(t, a, "r", msgs("r", 6, 7))
			got, err := b.MessagesAfter("r", 0, 100)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 7 {
				t.Fatalf("after the conflicts: ids %v, want 1..7", ids(got))
			}
			checkIDs(t, "after the conflicts", "r", got[:4], 1, 4)
			checkIDs(t, "after the conflicts", "r", got[5:], 6, 7)
			if string(got[4].Data) != string(other[0].Data) {
				t.Errorf("id 5 = %s, want the other writer's", got[4].Data)
			}
		})
	}
}

// A retry of a write whose answer was lost finds its own entry (same msg id,
// same bytes) and succeeds without a second copy.
func TestJetStreamOwnRetryIsNotAConflict(t *testing.T) {
	s := openJetStream(t, 1, 0, persistence.NextPrefix())
	batch := msgs("r", 1, 3)
	checkLastID(t, s, "r", 0)
	m := &nats.Msg{Subject: s.RoomSubject("r"), Data: persistence.EncodeEntry(batch), Header: nats.Header{"Panda-First": {"1"}, "Panda-Last": {"3"}}}
	m.Header.Set(nats.MsgIdHdr, "r:1")
	if _, err := persistence.SharedNodes(t, 1)[0].JetStream().PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendMessages("r", batch); err != nil {
		t.Fatalf("retry of a stored batch: %v", err)
	}
	got, _ := s.MessagesAfter("r", 0, 100)
	checkIDs(t, "after the retry", "r", got, 1, 3)
}

// Bad batches are refused with a clear error, and nothing is stored.
func TestJetStreamRefusesGaps(t *testing.T) {
	s := openJetStream(t, 1, 0, persistence.NextPrefix())
	appendAll(t, s, "r", msgs("r", 1, 2))
	for _, tt := range []struct {
		name  string
		batch []persistence.Message
	}{
		{"gap after the last id", msgs("r", 4, 5)},
		{"gap inside the batch", append(msgs("r", 3, 3), msgs("r", 5, 5)...)},
	} {
		err := s.AppendMessages("r", tt.batch)
		if err == nil || errors.Is(err, persistence.ErrConflict) {
			t.Errorf("%s: %v, want an error that is not a conflict", tt.name, err)
		}
	}
	checkLastID(t, s, "r", 2)
}

// Many small entries: the binary search finds any id, from any node.
func TestJetStreamManyEntries(t *testing.T) {
	s := openJetStream(t, 1, 0, persistence.NextPrefix())
	for id := uint64(1); id <= 300; id++ {
		appendAll(t, s, "busy", msgs("busy", id, id))
		appendAll(t, s, "quiet", msgs("quiet", id, id)) // interleaved: sequences are not ids
	}
	for _, after := range []uint64{0, 1, 77, 150, 255, 298, 299, 300} {
		got, err := s.MessagesAfter("busy", after, 5)
		if err != nil {
			t.Fatal(err)
		}
		checkIDs(t, fmt.Sprintf("MessagesAfter(%d)", after), "busy", got, after+1, min(after+5, 300))
	}
	got, err := s.MessagesBefore("quiet", 101, 10)
	if err != nil {
		t.Fatal(err)
	}
	checkIDs(t, "MessagesBefore(101, 10)", "quiet", got, 91, 100)
	if n, err := s.TrimMessages("busy", 200); err != nil || n != 199 {
		t.Fatalf("TrimMessages = %d, %v", n, err)
	}
	got, _ = s.MessagesAfter("busy", 0, 3)
	checkIDs(t, "after trimming", "busy", got, 200, 202)
	got, _ = s.MessagesAfter("quiet", 0, 3)
	checkIDs(t, "the other room after trimming", "quiet", got, 1, 3)
}

// Media bytes put on one node are read on the others at once; an unknown id
// is ErrNotFound.
func TestJetStreamBlobsAcrossNodes(t *testing.T) {
	s := threeStores(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var blobs [3]*persistence.JetStreamBlobs
	for i := range blobs {
		b, err := persistence.OpenJetStreamBlobs(ctx, s[i])
		if err != nil {
			t.Fatal(err)
		}
		blobs[i] = b
	}
	data := bytes.Repeat([]byte("0123456789abcdef"), 40000) // 640 KB: several chunks
	if err := blobs[0].Put("abc", bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	for i, b := range blobs {
		if ok, err := b.Has("abc"); err != nil || !ok {
			t.Errorf("node %d Has = %v, %v", i+1, ok, err)
		}
		r, size, err := b.Open("abc")
		if err != nil {
			t.Fatalf("node %d Open: %v", i+1, err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || size != int64(len(data)) || !bytes.Equal(got, data) {
			t.Errorf("node %d read %d bytes (size %d), %v; want the %d put", i+1, len(got), size, err, len(data))
		}
	}
	if ok, err := blobs[2].Has("nope"); err != nil || ok {
		t.Errorf("Has(unknown) = %v, %v", ok, err)
	}
	if _, _, err := blobs[1].Open("nope"); !errors.Is(err, persistence.ErrNotFound) {
		t.Errorf("Open(unknown) = %v, want ErrNotFound", err)
	}

	// Deleted on one node, gone on all (a deleted object keeps a marked
	// description, which is no object); written again, back on all.
	if err := blobs[2].Delete("abc"); err != nil {
		t.Fatal(err)
	}
	if err := blobs[2].Delete("abc"); err != nil {
		t.Errorf("Delete of a deleted object: %v", err)
	}
	for i, b := range blobs {
		if ok, err := b.Has("abc"); err != nil || ok {
			t.Errorf("node %d Has after Delete = %v, %v", i+1, ok, err)
		}
		if _, _, err := b.Open("abc"); !errors.Is(err, persistence.ErrNotFound) {
			t.Errorf("node %d Open after Delete = %v, want ErrNotFound", i+1, err)
		}
	}
	if err := blobs[1].Put("abc", bytes.NewReader(data[:1000])); err != nil {
		t.Fatal(err)
	}
	if r, size, err := blobs[0].Open("abc"); err != nil || size != 1000 {
		t.Errorf("Open after a new Put = %d, %v", size, err)
	} else {
		r.Close()
	}
}

// Should the stream ever hold two entries with the same ids (a write that
// passed its expected-sequence check wrongly, say across a leader change),
// every reader sees each id once, as the first entry stored has it.
func TestJetStreamFirstEntryWins(t *testing.T) {
	s := openJetStream(t, 1, 0, persistence.NextPrefix())
	appendAll(t, s, "r", msgs("r", 1, 3))
	late := msgs("r", 2, 4)
	for i := range late {
		late[i].Data = []byte(fmt.Sprintf(`{"id":%d,"content":"late"}`, late[i].ID))
	}
	m := &nats.Msg{Subject: s.RoomSubject("r"), Data: persistence.EncodeEntry(late), Header: nats.Header{"Panda-First": {"2"}, "Panda-Last": {"4"}}}
	if _, err := persistence.SharedNodes(t, 1)[0].JetStream().PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	check := func(what string, got []persistence.Message, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 4 {
			t.Fatalf("%s: %d messages, want ids 1..4 once each", what, len(got))
		}
		for i, m := range got {
			if m.ID != uint64(i+1) || bytes.Contains(m.Data, []byte("late")) != (m.ID == 4) {
				t.Errorf("%s: message %d is id %d %s; want id %d, the first entry's for 1..3", what, i, m.ID, m.Data, i+1)
			}
		}
	}
	got, err := s.MessagesAfter("r", 0, 100)
	check("MessagesAfter", got, err)
	got, err = s.MessagesBefore("r", 5, 100)
	check("MessagesBefore", got, err)
}
