package persistence_test

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pandachat/pandachat/persistence"
)

// implementations lists every Store; each runs the same conformance suite.
var implementations = []struct {
	name string
	open func(t testing.TB) persistence.Store
}{
	{"badger", func(t testing.TB) persistence.Store {
		s, err := persistence.OpenBadger(t.TempDir(), persistence.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return s
	}},
	{"memory", func(t testing.TB) persistence.Store { return persistence.NewMemory() }},
	// Cluster mode's store: on one embedded NATS node, and on three in this
	// process with three copies of everything (jetstream_test.go).
	{"jetstream", func(t testing.TB) persistence.Store { return openJetStream(t, 1, 0, persistence.NextPrefix()) }},
	{"jetstream-3nodes", func(t testing.TB) persistence.Store { return openJetStream(t, 3, 1, persistence.NextPrefix()) }},
}

func TestStore(t *testing.T) {
	for _, impl := range implementations {
		t.Run(impl.name, func(t *testing.T) {
			for _, c := range []struct {
				name string
				run  func(*testing.T, persistence.Store)
			}{
				{"Sessions", testSessions},
				{"Users", testUsers},
				{"OpenIDRebinding", testOpenIDRebinding},
				{"MessagesEmptyRoom", testMessagesEmptyRoom},
				{"MessagesAfter", testMessagesAfter},
				{"MessagesBefore", testMessagesBefore},
				{"RoomsNeverMix", testRoomsNeverMix},
				{"TrimMessages", testTrimMessages},
				{"LargeBatch", testLargeBatch},
				{"MessageCIDs", testMessageCIDs},
				{"Media", testMedia},
				{"Login", testLogin},
				{"Uploads", testUploads},
				{"LoginOpenID", testLoginOpenID},
				{"LoginOpenIDConcurrent", testLoginOpenIDConcurrent},
				{"Tickets", testTickets},
				{"TicketTakenOnce", testTicketTakenOnce},
			} {
				t.Run(c.name, func(t *testing.T) { c.run(t, impl.open(t)) })
			}
		})
	}
}

// UTC without a monotonic reading, so values survive a JSON round trip unchanged.
func future(d time.Duration) time.Time { return time.Now().Add(d).UTC() }

func testSessions(t *testing.T, s persistence.Store) {
	live := persistence.Session{ID: "live", Skey: "k1", UID: "u1", SessionKey: "sk", Expires: future(time.Hour)}
	for _, sess := range []persistence.Session{
		live,
		{ID: "past", Skey: "k2", UID: "u2", Expires: future(-time.Hour)},
		{ID: "zero", Skey: "k3", UID: "u3"},
		{ID: "doomed", Skey: "k4", UID: "u4", Expires: future(time.Hour)},
	} {
		if err := s.PutSession(sess); err != nil {
			t.Fatalf("PutSession(%s): %v", sess.ID, err)
		}
	}
	// Writing an expired copy over a live session ends it.
	if err := s.PutSession(persistence.Session{ID: "doomed", Expires: future(-time.Second)}); err != nil {
		t.Fatalf("PutSession(expired over live): %v", err)
	}

	got, err := s.Session("live")
	if err != nil || !reflect.DeepEqual(got, live) {
		t.Errorf("Session(live) = %+v, %v; want %+v", got, err, live)
	}
	for _, id := range []string{"past", "zero", "doomed", "unknown", ""} {
		if got, err := s.Session(id); !errors.Is(err, persistence.ErrNotFound) {
			t.Errorf("Session(%q) = %+v, %v; want ErrNotFound", id, got, err)
		}
	}

	if err := s.DeleteSession("live"); err != nil {
		t.Fatalf("DeleteSession: %v", err)
	}
	if _, err := s.Session("live"); !errors.Is(err, persistence.ErrNotFound) {
		t.Errorf("Session after delete: %v, want ErrNotFound", err)
	}
	if err := s.DeleteSession("never-existed"); err != nil {
		t.Errorf("DeleteSession(unknown) = %v, want nil", err)
	}
}

func testUsers(t *testing.T, s persistence.Store) {
	created := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	alice := persistence.User{
		UID: "a1", OpenID: "o-alice", UnionID: "un-alice", Created: created,
		Profile: persistence.Profile{NickName: "Alice 熊猫", AvatarURL: "/media/x", Gender: 2, City: "Chengdu", Language: "zh_CN"},
	}
	dev := persistence.User{UID: "d1", Profile: persistence.Profile{NickName: "dev"}, Created: created}
	for _, u := range []persistence.User{alice, dev} {
		if err := s.PutUser(u); err != nil {
			t.Fatalf("PutUser(%s): %v", u.UID, err)
		}
	}
	for _, tt := range []struct {
		name   string
		get    func() (persistence.User, error)
		want   persistence.User
		wantOK bool
	}{
		{"by uid", func() (persistence.User, error) { return s.User("a1") }, alice, true},
		{"by openId", func() (persistence.User, error) { return s.UserByOpenID("o-alice") }, alice, true},
		{"without openId", func() (persistence.User, error) { return s.User("d1") }, dev, true},
		{"unknown uid", func() (persistence.User, error) { return s.User("nobody") }, persistence.User{}, false},
		{"unknown openId", func() (persistence.User, error) { return s.UserByOpenID("o-nobody") }, persistence.User{}, false},
		{"empty openId", func() (persistence.User, error) { return s.UserByOpenID("") }, persistence.User{}, false},
		{"uid is not an openId", func() (persistence.User, error) { return s.UserByOpenID("a1") }, persistence.User{}, false},
		{"openId is not a uid", func() (persistence.User, error) { return s.User("o-alice") }, persistence.User{}, false},
	} {
		got, err := tt.get()
		if tt.wantOK && (err != nil || !reflect.DeepEqual(got, tt.want)) {
			t.Errorf("%s: got %+v, %v; want %+v", tt.name, got, err, tt.want)
		}
		if !tt.wantOK && !errors.Is(err, persistence.ErrNotFound) {
			t.Errorf("%s: got %+v, %v; want ErrNotFound", tt.name, got, err)
		}
	}

	// Replacing a user replaces its profile.
	alice.Profile.NickName = "Alice II"
	if err := s.PutUser(alice); err != nil {
		t.Fatal(err)
	}
	if got, err := s.UserByOpenID("o-alice"); err != nil || got.Profile.NickName != "Alice II" {
		t.Errorf("after update: %+v, %v; want nickName Alice II", got, err)
	}

	// Editing changes the stored user in place: what another writer stored
	// since the caller read it (a login's unionId and city) is kept.
	stale, _ := s.User("a1")
	moved := alice
	moved.UnionID, moved.Profile.City = "un-new", "Chongqing"
	if err := s.PutUser(moved); err != nil {
		t.Fatal(err)
	}
	got, err := s.EditUser(stale.UID, func(u *persistence.User) { u.Profile.NickName = "Alice III" })
	want := moved
	want.Profile.NickName = "Alice III"
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("EditUser: %+v, %v; want %+v", got, err, want)
	}
	if again, err := s.UserByOpenID("o-alice"); err != nil || !reflect.DeepEqual(again, want) {
		t.Errorf("after EditUser the store holds %+v, %v; want %+v", again, err, want)
	}
	if _, err := s.EditUser("nobody", func(*persistence.User) {}); !errors.Is(err, persistence.ErrNotFound) {
		t.Errorf("EditUser(nobody) = %v, want ErrNotFound", err)
	}
}

func testOpenIDRebinding(t *testing.T, s persistence.Store) {
	put := func(u persistence.User) {
		t.Helper()
		if err := s.PutUser(u); err != nil {
			t.Fatal(err)
		}
	}
	put(persistence.User{UID: "first", OpenID: "o-1"})
	put(persistence.User{UID: "second", OpenID: "o-1"}) // o-1 now belongs to "second"
	if u, err := s.UserByOpenID("o-1"); err != nil || u.UID != "second" {
		t.Errorf("UserByOpenID(o-1) = %s, %v; want second", u.UID, err)
	}
	if u, err := s.User("first"); err != nil || u.UID != "first" {
		t.Errorf("User(first) = %+v, %v; the old user must stay", u, err)
	}

	put(persistence.User{UID: "second", OpenID: "o-2"}) // "second" moves to o-2
	if u, err := s.UserByOpenID("o-2"); err != nil || u.UID != "second" {
		t.Errorf("UserByOpenID(o-2) = %s, %v; want second", u.UID, err)
	}
	if u, err := s.UserByOpenID("o-1"); !errors.Is(err, persistence.ErrNotFound) {
		t.Errorf("UserByOpenID(o-1) after the move = %+v, %v; want ErrNotFound (stale binding)", u, err)
	}
}

// msgs builds messages with ids from..to whose data names the room and id.
func msgs(room string, from, to uint64) []persistence.Message {
	var out []persistence.Message
	for id := from; id <= to; id++ {
		out = append(out, persistence.Message{ID: id, Data: fmt.Appendf(nil, `{"id":%d,"room":%q}`, id, room)})
	}
	return out
}

func appendAll(t *testing.T, s persistence.Store, room string, batches ...[]persistence.Message) {
	t.Helper()
	for _, b := range batches {
		if err := s.AppendMessages(room, b); err != nil {
			t.Fatalf("AppendMessages(%s, %d..): %v", room, b[0].ID, err)
		}
	}
}

// checkIDs asserts got holds exactly the ids from..to (empty when from > to) with their data.
func checkIDs(t *testing.T, what, room string, got []persistence.Message, from, to uint64) {
	t.Helper()
	var want []persistence.Message
	if from <= to {
		want = msgs(room, from, to)
	}
	if len(got) != len(want) {
		t.Errorf("%s: %d messages %v, want ids %d..%d", what, len(got), ids(got), from, to)
		return
	}
	for i := range want {
		if got[i].ID != want[i].ID || !bytes.Equal(got[i].Data, want[i].Data) {
			t.Errorf("%s: message %d = {%d %s}, want {%d %s}", what, i, got[i].ID, got[i].Data, want[i].ID, want[i].Data)
			return
		}
	}
}

func ids(ms []persistence.Message) []uint64 {
	out := make([]uint64, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

func checkLastID(t *testing.T, s persistence.Store, room string, want uint64) {
	t.Helper()
	if got, err := s.LastID(room); err != nil || got != want {
		t.Errorf("LastID(%s) = %d, %v; want %d", room, got, err, want)
	}
}

func testMessagesEmptyRoom(t *testing.T, s persistence.Store) {
	checkLastID(t, s, "nobody-here", 0)
	if err := s.AppendMessages("nobody-here", nil); err != nil {
		t.Errorf("AppendMessages(nil) = %v", err)
	}
	checkLastID(t, s, "nobody-here", 0)
	got, err := s.MessagesAfter("nobody-here", 0, 10)
	if err != nil || len(got) != 0 {
		t.Errorf("MessagesAfter on empty room = %v, %v", ids(got), err)
	}
	got, err = s.MessagesBefore("nobody-here", math.MaxUint64, 10)
	if err != nil || len(got) != 0 {
		t.Errorf("MessagesBefore on empty room = %v, %v", ids(got), err)
	}
	if n, err := s.TrimMessages("nobody-here", 100); err != nil || n != 0 {
		t.Errorf("TrimMessages on empty room = %d, %v", n, err)
	}
}

func testMessagesAfter(t *testing.T, s persistence.Store) {
	appendAll(t, s, "r", msgs("r", 1, 1), msgs("r", 2, 5), msgs("r", 6, 10))
	checkLastID(t, s, "r", 10)
	for _, tt := range []struct {
		after    uint64
		limit    int
		from, to uint64 // from > to: none
	}{
		{0, 100, 1, 10},
		{0, 10, 1, 10},
		{0, 3, 1, 3},
		{0, 1, 1, 1},
		{4, 2, 5, 6},
		{7, 100, 8, 10},
		{9, 100, 10, 10},
		{10, 100, 1, 0}, // at the end
		{11, 100, 1, 0}, // past the end
		{math.MaxUint64 - 1, 100, 1, 0},
		{math.MaxUint64, 100, 1, 0}, // after+1 must not wrap to the first message
		{0, 0, 1, 0},
		{0, -1, 1, 0},
		{3, math.MaxInt, 4, 10},
	} {
		got, err := s.MessagesAfter("r", tt.after, tt.limit)
		if err != nil {
			t.Errorf("MessagesAfter(%d, %d): %v", tt.after, tt.limit, err)
			continue
		}
		checkIDs(t, fmt.Sprintf("MessagesAfter(%d, %d)", tt.after, tt.limit), "r", got, tt.from, tt.to)
	}
}

func testMessagesBefore(t *testing.T, s persistence.Store) {
	appendAll(t, s, "r", msgs("r", 1, 4), msgs("r", 5, 10))
	for _, tt := range []struct {
		before   uint64
		limit    int
		from, to uint64
	}{
		{0, 100, 1, 0},
		{1, 100, 1, 0},
		{2, 100, 1, 1},
		{5, 100, 1, 4},
		{5, 2, 3, 4},
		{10, 3, 7, 9},
		{11, 3, 8, 10},
		{11, 100, 1, 10},
		{100, 3, 8, 10},
		{math.MaxUint64, 100, 1, 10},
		{math.MaxUint64, 1, 10, 10},
		{11, 0, 1, 0},
		{11, -1, 1, 0},
		{11, math.MaxInt, 1, 10},
	} {
		got, err := s.MessagesBefore("r", tt.before, tt.limit)
		if err != nil {
			t.Errorf("MessagesBefore(%d, %d): %v", tt.before, tt.limit, err)
			continue
		}
		checkIDs(t, fmt.Sprintf("MessagesBefore(%d, %d)", tt.before, tt.limit), "r", got, tt.from, tt.to)
	}
}

// testRoomsNeverMix: a room whose name is a prefix of another's ("a", "ab") and
// ids that share their first bytes never leak into each other.
func testRoomsNeverMix(t *testing.T, s persistence.Store) {
	appendAll(t, s, "a", msgs("a", 1, 3))
	appendAll(t, s, "ab", msgs("ab", 1, 5))
	appendAll(t, s, "b", msgs("b", 1, 1))
	appendAll(t, s, "a", msgs("a", 4, 4))
	checkLastID(t, s, "a", 4)
	checkLastID(t, s, "ab", 5)
	checkLastID(t, s, "b", 1)
	checkLastID(t, s, "", 0)
	for _, tt := range []struct {
		room string
		to   uint64
	}{{"a", 4}, {"ab", 5}, {"b", 1}} {
		got, err := s.MessagesAfter(tt.room, 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		checkIDs(t, "MessagesAfter("+tt.room+")", tt.room, got, 1, tt.to)
		got, err = s.MessagesBefore(tt.room, math.MaxUint64, 100)
		if err != nil {
			t.Fatal(err)
		}
		checkIDs(t, "MessagesBefore("+tt.room+")", tt.room, got, 1, tt.to)
	}
	if n, err := s.TrimMessages("a", 100); err != nil || n != 4 {
		t.Errorf("TrimMessages(a) = %d, %v; want 4", n, err)
	}
	got, _ := s.MessagesAfter("ab", 0, 100)
	checkIDs(t, "ab after trimming a", "ab", got, 1, 5)
}

func testTrimMessages(t *testing.T, s persistence.Store) {
	appendAll(t, s, "r", msgs("r", 1, 10))
	for _, tt := range []struct {
		keepFrom uint64
		removed  int
		from     uint64 // first id left
	}{
		{0, 0, 1},
		{1, 0, 1},
		{4, 3, 4},
		{4, 0, 4}, // again: nothing left below
		{2, 0, 4}, // lower than before
		{10, 6, 10},
		{11, 1, 11}, // everything
		{math.MaxUint64, 0, 11},
	} {
		n, err := s.TrimMessages("r", tt.keepFrom)
		if err != nil || n != tt.removed {
			t.Errorf("TrimMessages(%d) = %d, %v; want %d", tt.keepFrom, n, err, tt.removed)
		}
		got, err := s.MessagesAfter("r", 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		checkIDs(t, fmt.Sprintf("after TrimMessages(%d)", tt.keepFrom), "r", got, tt.from, 10)
		checkLastID(t, s, "r", 10) // trimming never lowers the last id
	}
	appendAll(t, s, "r", msgs("r", 11, 12))
	checkLastID(t, s, "r", 12)
	got, _ := s.MessagesBefore("r", math.MaxUint64, 100)
	checkIDs(t, "after trimming all and appending", "r", got, 11, 12)
}

// testLargeBatch: a batch bigger than one Badger transaction is stored whole and in order.
func testLargeBatch(t *testing.T, s persistence.Store) {
	const n = 1500 // 3 MB: above Badger's transaction limit for a 16 MB memtable
	batch := make([]persistence.Message, n)
	for i := range batch {
		data := bytes.Repeat([]byte{'x'}, 2048)
		copy(data, fmt.Sprint(i+1))
		batch[i] = persistence.Message{ID: uint64(i + 1), Data: data}
	}
	if err := s.AppendMessages("big", batch); err != nil {
		t.Fatalf("AppendMessages(%d messages): %v", n, err)
	}
	checkLastID(t, s, "big", n)
	got, err := s.MessagesAfter("big", 0, 2*n)
	if err != nil || len(got) != n {
		t.Fatalf("MessagesAfter: %d messages, %v; want %d", len(got), err, n)
	}
	for i, m := range got {
		if m.ID != uint64(i+1) || !bytes.Equal(m.Data, batch[i].Data) {
			t.Fatalf("message %d: id %d, data %.10q; want id %d", i, m.ID, m.Data, i+1)
		}
	}
}

func testMedia(t *testing.T, s persistence.Store) {
	m := persistence.Media{
		ID: "sha-abc", Owner: "u1", MIME: "image/png", Size: 1234, Width: 64, Height: 32,
		Created: time.Date(2024, 1, 2, 3, 4, 5, 6, time.UTC),
	}
	if err := s.PutMedia(m); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Media("sha-abc"); err != nil || !reflect.DeepEqual(got, m) {
		t.Errorf("Media = %+v, %v; want %+v", got, err, m)
	}
	for _, id := range []string{"unknown", "", "sha-ab", "sha-abcd"} {
		if got, err := s.Media(id); !errors.Is(err, persistence.ErrNotFound) {
			t.Errorf("Media(%q) = %+v, %v; want ErrNotFound", id, got, err)
		}
	}
	m.Owner = "u2"
	if err := s.PutMedia(m); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Media("sha-abc"); got.Owner != "u2" {
		t.Errorf("after overwrite Owner = %q, want u2", got.Owner)
	}
	if err := s.Sync(); err != nil {
		t.Errorf("Sync: %v", err)
	}
}

// BenchmarkAppendMessages stores batches of ~200 B messages; compare the
// implementations and batch sizes with benchstat.
func BenchmarkAppendMessages(b *testing.B) {
	for _, impl := range implementations {
		for _, size := range []int{1, 16, 256} {
			b.Run(fmt.Sprintf("store=%s/batch=%d", impl.name, size), func(b *testing.B) {
				s := impl.open(b)
				batch := make([]persistence.Message, size)
				for i := range batch {
					batch[i].Data = bytes.Repeat([]byte{'m'}, 200)
				}
				b.SetBytes(int64(size * 200))
				b.ReportAllocs()
				var next uint64
				for b.Loop() {
					for i := range batch {
						next++
						batch[i].ID = next
					}
					if err := s.AppendMessages("bench", batch); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(next)/b.Elapsed().Seconds(), "msgs/s")
			})
		}
		// Many small rooms: 64 writers, each a room storing one message at a time.
		b.Run(fmt.Sprintf("store=%s/rooms=64", impl.name), func(b *testing.B) {
			s := impl.open(b)
			var room atomic.Int64
			b.SetParallelism(64 / runtime.GOMAXPROCS(0))
			b.ReportAllocs()
			start := processCPU()
			defer func() { b.ReportMetric(float64(processCPU()-start)/float64(b.N), "cpu-ns/msg") }()
			b.RunParallel(func(pb *testing.PB) {
				name := fmt.Sprint("bench-", room.Add(1))
				msg := []persistence.Message{{Data: bytes.Repeat([]byte{'m'}, 200)}}
				for pb.Next() {
					msg[0].ID++
					if err := s.AppendMessages(name, msg); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkMessagesAfter reads pages of 100 ~250 B messages at random places
// in a room of 20 000, after a reopen (from tables and the value log, as a
// replay or /history of older messages does).
func BenchmarkMessagesAfter(b *testing.B) {
	dir := b.TempDir()
	s, err := persistence.OpenBadger(dir, persistence.Options{})
	if err != nil {
		b.Fatal(err)
	}
	const total, page = 20000, 100
	body := bytes.Repeat([]byte{'m'}, 250) // Badger copies what it stores
	batch := make([]persistence.Message, 100)
	for id := uint64(1); id <= total; id += uint64(len(batch)) {
		for i := range batch {
			batch[i] = persistence.Message{ID: id + uint64(i), Data: body}
		}
		if err := s.AppendMessages("replay", batch); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	if s, err = persistence.OpenBadger(dir, persistence.Options{}); err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	b.ReportAllocs()
	for b.Loop() {
		after := rng.Uint64N(total - page)
		got, err := s.MessagesAfter("replay", after, page)
		if err != nil || len(got) != page || got[0].ID != after+1 {
			b.Fatalf("MessagesAfter(%d) = %d messages, err %v", after, len(got), err)
		}
	}
}

// BenchmarkAppendPaced: 1 000 rooms storing one message at a time, each on
// its own clock (as its sender types), at a total rate, with and without the
// group commit's spacing; cpu-ns/msg is what a message costs the process,
// Badger's goroutines and the rooms' timers included, append-ns/msg how long
// its room waits for the store. Run with -benchtime Nx (N/rate seconds).
func BenchmarkAppendPaced(b *testing.B) {
	for _, rate := range []int{1000, 2000, 5000} {
		for _, wait := range []time.Duration{-1, 0} {
			name := map[bool]string{true: "none", false: "default"}[wait < 0]
			b.Run(fmt.Sprintf("rate=%d/wait=%s", rate, name), func(b *testing.B) {
				s, err := persistence.OpenBadger(b.TempDir(), persistence.Options{GroupWait: wait})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				const rooms = 1000
				every := time.Duration(rooms) * time.Second / time.Duration(rate) // one room's interval
				var left, waited atomic.Int64
				left.Store(int64(b.N))
				var wg sync.WaitGroup
				b.ReportAllocs()
				start := processCPU()
				began := time.Now()
				for r := range rooms {
					wg.Add(1)
					go func() {
						defer wg.Done()
						msg := []persistence.Message{{Data: bytes.Repeat([]byte{'m'}, 200)}}
						next := began.Add(every * time.Duration(r) / rooms) // phases spread over the interval
						for left.Add(-1) >= 0 {
							time.Sleep(time.Until(next))
							next = next.Add(every)
							msg[0].ID++
							t0 := time.Now()
							if err := s.AppendMessages(fmt.Sprint("paced-", r), msg); err != nil {
								b.Error(err)
								return
							}
							waited.Add(int64(time.Since(t0)))
						}
					}()
				}
				wg.Wait()
				b.ReportMetric(float64(processCPU()-start)/float64(b.N), "cpu-ns/msg")
				b.ReportMetric(float64(waited.Load())/float64(b.N), "append-ns/msg")
			})
		}
	}
}

// processCPU is the user + system time of this process so far: what a
// benchmark costs, Badger's goroutines included, whatever else the machine does.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func testLogin(t *testing.T, s persistence.Store) {
	u := persistence.User{UID: "u-login", OpenID: "o-login", Profile: persistence.Profile{NickName: "Mei"}}
	sess := persistence.Session{ID: "sess-login", Skey: "k", UID: u.UID, Expires: future(time.Hour)}
	if err := s.PutLogin(u, sess); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Session(sess.ID); err != nil || got.UID != u.UID || got.Skey != "k" {
		t.Errorf("session = %+v, %v", got, err)
	}
	if got, err := s.UserByOpenID("o-login"); err != nil || got.Profile.NickName != "Mei" {
		t.Errorf("user by openId = %+v, %v", got, err)
	}
	if gs, gu, err := s.SessionUser(sess.ID); err != nil || gs.Skey != "k" || gu.UID != u.UID || gu.Profile.NickName != "Mei" {
		t.Errorf("SessionUser = %+v %+v %v", gs, gu, err)
	}
	if _, _, err := s.SessionUser("unknown"); !errors.Is(err, persistence.ErrNotFound) {
		t.Errorf("SessionUser of an unknown id: %v", err)
	}
	orphan := persistence.Session{ID: "sess-orphan", UID: "nobody", Expires: future(time.Hour)}
	if err := s.PutSession(orphan); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.SessionUser(orphan.ID); !errors.Is(err, persistence.ErrNotFound) {
		t.Errorf("SessionUser of a session without its user: %v", err)
	}
	expired := persistence.Session{ID: "sess-old", UID: u.UID, Expires: future(-time.Second)}
	if err := s.PutLogin(u, expired); err == nil {
		t.Error("PutLogin stored an expired session")
	}
	if _, err := s.Session("sess-old"); !errors.Is(err, persistence.ErrNotFound) {
		t.Errorf("expired login session: %v", err)
	}
}

// A message's cid comes back with it, apart from its JSON; a message without one reads as before.
func testMessageCIDs(t *testing.T, s persistence.Store) {
	in := []persistence.Message{
		{ID: 1, Data: []byte(`{"id":1}`), CID: "c-1"},
		{ID: 2, Data: []byte(`{"id":2}`)},
		{ID: 3, Data: []byte(`{"id":3,"content":"ä\u0000"}`), CID: "ünï"},
	}
	if err := s.AppendMessages("cids", in); err != nil {
		t.Fatal(err)
	}
	after, err := s.MessagesAfter("cids", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	before, err := s.MessagesBefore("cids", 4, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, got := range [][]persistence.Message{after, before} {
		if len(got) != len(in) {
			t.Fatalf("got %d messages, want %d", len(got), len(in))
		}
		for i := range in {
			if got[i].ID != in[i].ID || string(got[i].Data) != string(in[i].Data) || got[i].CID != in[i].CID {
				t.Errorf("message %d: got {%d %s %q}, want {%d %s %q}", i, got[i].ID, got[i].Data, got[i].CID, in[i].ID, in[i].Data, in[i].CID)
			}
		}
	}
}

func testLoginOpenID(t *testing.T, s persistence.Store) {
	fresh := persistence.User{UID: "u-first", Profile: persistence.Profile{NickName: "Panda-1"}}
	sess := func(id string) persistence.Session {
		return persistence.Session{ID: id, Skey: "k-" + id, UID: "ignored", Expires: future(time.Hour)}
	}
	u, s1, err := s.LoginOpenID("o-mei", fresh, nil, sess("s1"))
	if err != nil || u.UID != "u-first" || u.OpenID != "o-mei" || s1.UID != "u-first" {
		t.Fatalf("first login = %+v %+v %v; want the fresh user bound to o-mei", u, s1, err)
	}
	// A later login finds that user; edit sees the stored one, and its change is kept.
	var seen string
	edit := func(u *persistence.User) { seen = u.Profile.NickName; u.Profile.NickName = "Mei" }
	u, s2, err := s.LoginOpenID("o-mei", persistence.User{UID: "u-second"}, edit, sess("s2"))
	if err != nil || u.UID != "u-first" || s2.UID != "u-first" || seen != "Panda-1" {
		t.Fatalf("second login = %+v %+v %v (edit saw %q); want u-first", u, s2, err, seen)
	}
	if got, err := s.UserByOpenID("o-mei"); err != nil || got.Profile.NickName != "Mei" {
		t.Errorf("UserByOpenID after edit = %+v, %v", got, err)
	}
	for _, id := range []string{"s1", "s2"} {
		if gs, gu, err := s.SessionUser(id); err != nil || gs.UID != "u-first" || gu.UID != "u-first" {
			t.Errorf("SessionUser(%s) = %+v %+v %v", id, gs, gu, err)
		}
	}
	if _, err := s.User("u-second"); !errors.Is(err, persistence.ErrNotFound) {
		t.Errorf("the unused fresh user was stored: %v", err)
	}
	// A stale binding (the user moved to another openId) makes a new user.
	if err := s.PutUser(persistence.User{UID: "u-first", OpenID: "o-other"}); err != nil {
		t.Fatal(err)
	}
	if u, _, err := s.LoginOpenID("o-mei", persistence.User{UID: "u-third"}, nil, sess("s3")); err != nil || u.UID != "u-third" {
		t.Errorf("login over a stale binding = %+v, %v; want u-third", u, err)
	}
	if _, _, err := s.LoginOpenID("o-mei", fresh, nil, persistence.Session{ID: "old", Expires: future(-time.Second)}); err == nil {
		t.Error("LoginOpenID stored an expired session")
	}
	if _, _, err := s.LoginOpenID("", fresh, nil, sess("s4")); err == nil {
		t.Error("LoginOpenID without an openId succeeded")
	}
}

// Concurrent first logins of one openId end with one user.
func testLoginOpenIDConcurrent(t *testing.T, s persistence.Store) {
	const n = 50
	uids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fresh := persistence.User{UID: fmt.Sprintf("u-%d", i)}
			sess := persistence.Session{ID: fmt.Sprintf("s-%d", i), Expires: future(time.Hour)}
			u, _, err := s.LoginOpenID("o-race", fresh, nil, sess)
			if err != nil {
				t.Error(err)
			}
			uids[i] = u.UID
		}()
	}
	wg.Wait()
	for i, uid := range uids {
		if uid != uids[0] {
			t.Fatalf("login %d got uid %s, login 0 got %s: one openId, two users", i, uid, uids[0])
		}
		if sess, err := s.Session(fmt.Sprintf("s-%d", i)); err != nil || sess.UID != uids[0] {
			t.Errorf("session %d = %+v, %v", i, sess, err)
		}
	}
}

func testTickets(t *testing.T, s persistence.Store) {
	tk := persistence.Ticket{ID: "t1", SessionID: "sess-1", Expires: future(30 * time.Second)}
	if err := s.PutTicket(tk); err != nil {
		t.Fatal(err)
	}
	if got, err := s.TakeTicket("t1"); err != nil || !reflect.DeepEqual(got, tk) {
		t.Errorf("TakeTicket = %+v, %v; want %+v", got, err, tk)
	}
	if got, err := s.TakeTicket("t1"); !errors.Is(err, persistence.ErrNotFound) {
		t.Errorf("second TakeTicket = %+v, %v; want ErrNotFound", got, err)
	}
	for _, id := range []string{"unknown", ""} {
		if got, err := s.TakeTicket(id); !errors.Is(err, persistence.ErrNotFound) {
			t.Errorf("TakeTicket(%q) = %+v, %v; want ErrNotFound", id, got, err)
		}
	}
	if err := s.PutTicket(persistence.Ticket{ID: "old", Expires: future(-time.Second)}); err == nil {
		t.Error("PutTicket stored an expired ticket")
	}
	// A ticket is good until its expiry and not after.
	short := persistence.Ticket{ID: "short", SessionID: "sess-1", Expires: future(300 * time.Millisecond)}
	if err := s.PutTicket(short); err != nil {
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond)
	if got, err := s.TakeTicket("short"); !errors.Is(err, persistence.ErrNotFound) {
		t.Errorf("TakeTicket after expiry = %+v, %v; want ErrNotFound", got, err)
	}
}

// Of many concurrent takes of one ticket, exactly one succeeds.
func testTicketTakenOnce(t *testing.T, s persistence.Store) {
	for round := range 20 {
		id := fmt.Sprintf("race-%d", round)
		if err := s.PutTicket(persistence.Ticket{ID: id, SessionID: "sess", Expires: future(time.Minute)}); err != nil {
			t.Fatal(err)
		}
		var (
			wg  sync.WaitGroup
			won atomic.Int32
		)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := s.TakeTicket(id)
				switch {
				case err == nil:
					won.Add(1)
				case !errors.Is(err, persistence.ErrNotFound):
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if n := won.Load(); n != 1 {
			t.Fatalf("round %d: %d takers got the ticket, want exactly 1", round, n)
		}
	}
}

func testUploads(t *testing.T, s persistence.Store) {
	t0 := time.Date(2024, 5, 6, 7, 8, 0, 0, time.UTC)
	min := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Minute) }
	never := time.Time{} // forget nothing
	check := func(uid string, since time.Time, want ...persistence.Upload) {
		t.Helper()
		got, err := s.Uploads(uid, since)
		if err != nil {
			t.Fatalf("Uploads(%s, %v): %v", uid, since, err)
		}
		ok := len(got) == len(want)
		for i := 0; ok && i < len(got); i++ {
			ok = got[i].At.Equal(want[i].At) && got[i].Bytes == want[i].Bytes
		}
		if !ok {
			t.Errorf("Uploads(%s, %v) = %v, want %v", uid, since, got, want)
		}
	}
	add := func(uid string, at time.Time, n int64, forget time.Time) {
		t.Helper()
		if err := s.AddUpload(uid, at, n, forget); err != nil {
			t.Fatalf("AddUpload(%s, %v, %d): %v", uid, at, n, err)
		}
	}
	check("u1", never)

	// Records at one instant add up; they come back oldest first, whatever the order of writes.
	add("u1", min(1), 10, never)
	add("u1", min(0), 100, never)
	add("u1", min(0), 50, never)
	add("u1", min(2), 7, never)
	// Other users, one of them named like a sub-path of u1, never mix with u1.
	add("u2", min(0), 1000, never)
	add("u1/x", min(0), 2000, never)
	add("u", min(0), 3000, never)
	check("u1", never, persistence.Upload{At: min(0), Bytes: 150}, persistence.Upload{At: min(1), Bytes: 10}, persistence.Upload{At: min(2), Bytes: 7})
	check("u1", min(1), persistence.Upload{At: min(1), Bytes: 10}, persistence.Upload{At: min(2), Bytes: 7})
	check("u1", min(1).Add(time.Nanosecond), persistence.Upload{At: min(2), Bytes: 7})
	check("u1", min(3))
	check("u1/x", never, persistence.Upload{At: min(0), Bytes: 2000})
	check("u2", never, persistence.Upload{At: min(0), Bytes: 1000})

	// forget deletes the user's records strictly before it, and only the user's.
	add("u1", min(3), 1, min(1))
	check("u1", never, persistence.Upload{At: min(1), Bytes: 10}, persistence.Upload{At: min(2), Bytes: 7}, persistence.Upload{At: min(3), Bytes: 1})
	check("u1/x", never, persistence.Upload{At: min(0), Bytes: 2000})
	check("u", never, persistence.Upload{At: min(0), Bytes: 3000})
	// Forgetting past every record keeps only the one just written.
	add("u1", min(9), 2, min(8))
	check("u1", never, persistence.Upload{At: min(9), Bytes: 2})

	// Times before 1970 sort before later ones; a negative record subtracts.
	old := time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC)
	add("u3", t0, 5, never)
	add("u3", old, 4, never)
	add("u3", t0, -5, never)
	check("u3", never, persistence.Upload{At: old, Bytes: 4}, persistence.Upload{At: t0, Bytes: 0})
	check("u3", old.Add(time.Second), persistence.Upload{At: t0, Bytes: 0})
}
