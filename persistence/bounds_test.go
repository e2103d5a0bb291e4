package persistence_test

import (
	"testing"
	"time"

	"github.com/pandachat/pandachat/persistence"
)

// Pages that start inside a room's history and ask for more than is left, or
// less: every store returns exactly the ids that exist in the range.
func TestStorePageBounds(t *testing.T) {
	for _, impl := range implementations {
		t.Run(impl.name, func(t *testing.T) {
			s := impl.open(t)
			appendAll(t, s, "r", msgs("r", 1, 10))
			for _, tc := range []struct {
				after            uint64
				limit            int
				wantFrom, wantTo uint64
			}{
				{5, 7, 6, 10}, {5, 5, 6, 10}, {5, 4, 6, 9}, {9, 1 << 40, 10, 10}, {0, 3, 1, 3}, {10, 5, 11, 10},
			} {
				got, err := s.MessagesAfter("r", tc.after, tc.limit)
				if err != nil {
					t.Fatal(err)
				}
				checkIDs(t, "MessagesAfter", "r", got, tc.wantFrom, tc.wantTo)
			}
			for _, tc := range []struct {
				before           uint64
				limit            int
				wantFrom, wantTo uint64
			}{
				{6, 7, 1, 5}, {6, 3, 3, 5}, {2, 5, 1, 1}, {1, 5, 2, 1}, {11, 1 << 40, 1, 10},
			} {
				got, err := s.MessagesBefore("r", tc.before, tc.limit)
				if err != nil {
					t.Fatal(err)
				}
				checkIDs(t, "MessagesBefore", "r", got, tc.wantFrom, tc.wantTo)
			}
		})
	}
}

// A ticket that expires in just over a second can be taken now: a store that
// expires tickets by itself rounds the expiry up, never down.
func TestStoreTicketExpiryRoundsUp(t *testing.T) {
	for _, impl := range implementations {
		t.Run(impl.name, func(t *testing.T) {
			s := impl.open(t)
			tk := persistence.Ticket{ID: "soon", SessionID: "s1", Expires: future(time.Second + time.Millisecond)}
			if err := s.PutTicket(tk); err != nil {
				t.Fatal(err)
			}
			if got, err := s.TakeTicket("soon"); err != nil || got.ID != "soon" {
				t.Fatalf("TakeTicket = %+v, %v; want the ticket", got, err)
			}
		})
	}
}

// A room trimmed to nothing keeps its last id, and after a reopen (when the
// store no longer remembers where the room's history starts) trimming it
// again deletes nothing.
func TestBadgerTrimEmptiedRoomAfterReopen(t *testing.T) {
	dir := t.TempDir()
	s := openBadger(t, dir, persistence.Options{})
	appendAll(t, s, "r", msgs("r", 1, 3))
	if n, err := s.TrimMessages("r", 4); err != nil || n != 3 {
		t.Fatalf("TrimMessages(r, 4) = %d, %v; want 3", n, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openBadger(t, dir, persistence.Options{})
	defer s.Close()
	if n, err := s.TrimMessages("r", 10); err != nil || n != 0 {
		t.Errorf("TrimMessages of an emptied room after a reopen = %d, %v; want 0", n, err)
	}
	checkLastID(t, s, "r", 3)
}
