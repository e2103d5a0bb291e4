package persistence

import (
	"fmt"
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
// store written less often than that never waits; a negative GroupWait
// never waits. Every message is stored either way.
func TestGroupCommitSpacing(t *testing.T) {
	const rooms, rounds = 20, 5
	writeRounds := func(t *testing.T, s *Badger) {
		var wg sync.WaitGroup
		for r := range rooms {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 1; i <= rounds; i++ {
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
			if last, err := s.LastID(fmt.Sprint("room", r)); err != nil || last != rounds {
				t.Fatalf("room%d: last id %d, %v; want %d", r, last, err, rounds)
			}
		}
	}

	t.Run("busy", func(t *testing.T) {
		s, err := OpenBadger(t.TempDir(), Options{GroupWait: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		writeRounds(t, s)
		groups, waits := commitCounts(t, s)
		// Each round's batches queue within the spacing: at most the first
		// group of a round takes some alone, the next one after the wait the rest.
		if groups > 2*rounds || waits == 0 {
			t.Fatalf("%d rooms × %d rounds took %d groups (%d waited); want at most %d groups, and waits", rooms, rounds, groups, waits, 2*rounds)
		}
	})

	t.Run("seldom", func(t *testing.T) {
		s, err := OpenBadger(t.TempDir(), Options{GroupWait: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= 3; i++ {
			if err := s.AppendMessages("quiet", []Message{{ID: uint64(i), Data: []byte(`{}`)}}); err != nil {
				t.Fatal(err)
			}
			time.Sleep(60 * time.Millisecond) // longer than the spacing: the next write is not "busy"
		}
		if groups, waits := commitCounts(t, s); groups != 3 || waits != 0 {
			t.Fatalf("3 writes far apart: %d groups, %d waits; want 3 and none", groups, waits)
		}
	})

	t.Run("never", func(t *testing.T) {
		s, err := OpenBadger(t.TempDir(), Options{GroupWait: -1})
		if err != nil {
			t.Fatal(err)
		}
		writeRounds(t, s)
		if _, waits := commitCounts(t, s); waits != 0 {
			t.Fatalf("GroupWait < 0 waited %d times", waits)
		}
	})
}
