package protocol_test

import (
	"slices"
	"testing"

	"github.com/pandachat/pandachat/protocol"
)

// StoredMentions reads only the mentions list: not the content just before it, not bytes
// past the object, and without allocating.
func TestStoredMentionsReadsOnlyTheList(t *testing.T) {
	rec := protocol.Record{ID: 1, UID: "ab", NickName: "n", Kind: protocol.KindText, Content: "zz", Mentions: "u1,u2"}
	stored := slices.Clip(protocol.AppendRecord(nil, &rec)) // no spare capacity to read into
	for uid, want := range map[string]bool{"u1": true, "u2": true, "zz": false, "ab": false, "u": false} {
		if got := protocol.StoredMentions(stored, uid); got != want {
			t.Errorf("StoredMentions(%s) = %v, want %v", uid, got, want)
		}
	}
	long := string(slices.Repeat([]byte("u"), protocol.MaxUIDLen))
	rec.Mentions = long
	stored = protocol.AppendRecord(nil, &rec)
	if n := testing.AllocsPerRun(20, func() {
		if !protocol.StoredMentions(stored, long) {
			t.Fatal("the longest uid is not found")
		}
	}); n != 0 {
		t.Errorf("StoredMentions allocates %.0f times", n)
	}
}

// StoredEvent on the shortest objects; RecallStub makes its stub in one allocation.
func TestStoredShapesEdges(t *testing.T) {
	for in, want := range map[string]bool{"{}": false, "{": false, "": false, `{"type":"react"}`: true, `{"id":1}`: false} {
		if got := protocol.StoredEvent([]byte(in)); got != want {
			t.Errorf("StoredEvent(%s) = %v, want %v", in, got, want)
		}
	}
	for _, kind := range []protocol.Kind{protocol.KindText, protocol.KindGallery} {
		stored := protocol.AppendRecord(nil, &protocol.Record{ID: 1, UID: "ab", NickName: "n", Kind: kind, Content: "x", URL: "/media/x"})
		if n := testing.AllocsPerRun(20, func() {
			if _, ok := protocol.RecallStub(stored); !ok {
				t.Fatal("no stub")
			}
		}); n != 1 {
			t.Errorf("RecallStub of kind %d allocates %.0f times, want 1", kind, n)
		}
	}
}
