package persistence

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// commitCounts closes s and returns its committer's groups and waits.
func commitCounts(t *testing.T, s *Badger) (groups, waits int) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return s.commits.groups, s.commits.waits // the loop has ended: Close waited for it
}

// While rooms keep writing, groups begin at most once per GroupWait, so each
// transaction carries the batches of every room that wrote meanwhile; a
// store written less often than that, or with fewer than gatherAtLeast
// batches per GroupWait, never waits; a negative GroupWait never waits.
// Every message is stored either way.
func TestGroupCommitSpacing(t *testing.T) {
	// writeRounds has rooms rooms write rounds one-message batches each, a
	// round every every (0: each as soon as the last is stored), and checks
	// that every room's messages are stored.
	writeRounds := func(t *testing.T, s *Badger, rooms, rounds int, every time.Duration) {
		var wg sync.WaitGroup
		start := time.Now()
		for r := range rooms {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 1; i <= rounds; i++ {
					time.Sleep(time.Until(start.Add(time.Duration(i) * every)))
					msg := []Message{{ID: uint64(i), Data: []byte(fmt.Sprintf(`{"id":%d}`, i))}}
					if err := s.AppendMessages(fmt.Sprint("room", r), msg); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		for r := range rooms {
			if last, err := s.LastID(fmt.Sprint("room", r)); err != nil || last != uint64(rounds) {
				t.Fatalf("room%d: last id %d, %v; want %d", r, last, err, rounds)
			}
		}
	}

	t.Run("busy", func(t *testing.T) {
		// 20 rooms, each writing every 10 ms for 200 ms: 100 batches per
		// spacing. Committed as they come they would take hundreds of groups;
		// spaced, one group per 50 ms once the first spacing has shown the rate.
		s, err := OpenBadger(t.TempDir(), Options{GroupWait: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		const rooms, rounds = 20, 20
		writeRounds(t, s, rooms, rounds, 10*time.Millisecond)
		groups, waits := commitCounts(t, s)
		// The first spacing commits as they come (at most one group per
		// batch, 100); then one group per spacing, some 8 more.
		if max := rooms*5 + 20; groups > max || waits == 0 {
			t.Fatalf("%d rooms × %d rounds took %d groups (%d waited); want at most %d, and waits", rooms, rounds, groups, waits, max)
		}
	})

	// One room writing alone, each write gap after the last one is stored:
	// each is its own group, and none waits.
	for _, tc := range []struct {
		name   string
		wait   time.Duration
		writes int
		gap    time.Duration
	}{
		{"seldom", 20 * time.Millisecond, 3, 60 * time.Millisecond}, // longer than the spacing: the next write is not "busy"
		// Closer together than the spacing, but fewer than gatherAtLeast per
		// spacing (2.5 at most): waiting would cost a wake-up per write and
		// gather nothing.
		{"sparse", 50 * time.Millisecond, 10, 20 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := OpenBadger(t.TempDir(), Options{GroupWait: tc.wait})
			if err != nil {
				t.Fatal(err)
			}
			for i := 1; i <= tc.writes; i++ {
				if err := s.AppendMessages(tc.name, []Message{{ID: uint64(i), Data: []byte(`{}`)}}); err != nil {
					t.Fatal(err)
				}
				time.Sleep(tc.gap)
			}
			if groups, waits := commitCounts(t, s); groups != tc.writes || waits != 0 {
				t.Fatalf("%d writes %v apart with a %v spacing: %d groups, %d waits; want %d and none", tc.writes, tc.gap, tc.wait, groups, waits, tc.writes)
			}
		})
	}

	t.Run("never", func(t *testing.T) {
		s, err := OpenBadger(t.TempDir(), Options{GroupWait: -1})
		if err != nil {
			t.Fatal(err)
		}
		writeRounds(t, s, 20, 5, 0)
		if _, waits := commitCounts(t, s); waits != 0 {
			t.Fatalf("GroupWait < 0 waited %d times", waits)
		}
	})
}

// A panic in a group commit fails only the batches still waiting. A request
// finished before it is back with its caller, who may have queued it again
// with a new batch: that batch must not be told it failed.
func TestGroupCommitPanicFailsOnlyWhatWaits(t *testing.T) {
	s, err := OpenBadger(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	req := func(room string) *appendReq {
		return &appendReq{room: room, msgs: []Message{{ID: 1, Data: []byte(`{"id":1}`)}}, bytes: groupBytes, done: make(chan struct{}, 1)}
	}
	first, second := req("a"), req("b") // a part each: groupBytes apiece
	parts := 0
	s.commits.part = func(part []*appendReq) error {
		if parts++; parts == 1 {
			return s.commitTogether(part)
		}
		<-first.done // its caller has the answer and queues the request again
		first.err = nil
		panic("injected")
	}
	s.commitGroup([]*appendReq{first, second})
	select {
	case <-first.done:
		t.Errorf("a request queued again after it was finished was told: %v", first.err)
	default:
	}
	select {
	case <-second.done:
		if second.err == nil || !strings.Contains(second.err.Error(), "injected") {
			t.Errorf("the waiting batch was told %v; want the panic", second.err)
		}
	default:
		t.Error("the waiting batch was never answered")
	}
	if last, _ := s.LastID("a"); last != 1 {
		t.Errorf("the first part was not stored: last id %d", last)
	}
}
