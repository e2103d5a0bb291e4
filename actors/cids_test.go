package actors

import (
	"fmt"
	"testing"
	"time"
)

// The cid index answers within the window, forgets what expires or was
// refused, keeps at most maxCIDs, and gives its memory back when empty.
func TestCIDIndex(t *testing.T) {
	var x cidIndex
	t0 := time.Unix(1700000000, 0)
	if _, ok := x.get("u", "a", t0); ok {
		t.Fatal("an empty index knows a cid")
	}
	x.put("u", "a", 1, t0)
	x.put("v", "a", 2, t0)
	if id, ok := x.get("u", "a", t0.Add(cidWindow)); !ok || id != 1 {
		t.Errorf("at the end of the window: %d %v, want 1", id, ok)
	}
	if _, ok := x.get("u", "a", t0.Add(cidWindow+time.Millisecond)); ok {
		t.Error("found after the window")
	}
	if id, _ := x.get("v", "a", t0); id != 2 {
		t.Errorf("another user's equal cid: %d, want 2", id)
	}
	x.forget("u", "a", 7) // another id: not this entry
	if _, ok := x.get("u", "a", t0); !ok {
		t.Error("forget with another id dropped the entry")
	}
	x.forget("u", "a", 1)
	if _, ok := x.get("u", "a", t0); ok {
		t.Error("a forgotten cid is still known")
	}
	// A put after the window prunes what expired.
	x.put("w", "b", 3, t0.Add(cidWindow+time.Second))
	if len(x.ids) != 1 {
		t.Errorf("%d entries after the window passed, want 1", len(x.ids))
	}
	// The cap: the oldest go first.
	var y cidIndex
	for i := 0; i < maxCIDs+10; i++ {
		y.put("u", fmt.Sprint(i), uint64(i+1), t0)
	}
	if len(y.ids) != maxCIDs {
		t.Errorf("%d entries, want the cap %d", len(y.ids), maxCIDs)
	}
	if _, ok := y.get("u", "9", t0); ok {
		t.Error("one of the oldest survived the cap")
	}
	if _, ok := y.get("u", "10", t0); !ok {
		t.Error("the oldest within the cap was dropped")
	}
	if live := len(y.order) - y.head; live != maxCIDs {
		t.Errorf("%d in the order list, want %d", live, maxCIDs)
	}
	if len(y.order) > maxCIDs+maxCIDs/2+64 {
		t.Errorf("order list of %d never compacted", len(y.order))
	}
	// Everything expired: the memory goes.
	y.put("u", "last", 1, t0.Add(cidWindow+time.Second))
	y.forget("u", "last", 1)
	y.prune(t0.Add(cidWindow + 2*time.Second))
	if y.ids != nil || y.order != nil || y.head != 0 {
		t.Errorf("an empty index keeps %d ids, %d order entries", len(y.ids), len(y.order))
	}
	// A re-put of a forgotten key is found again, and an old order entry
	// does not delete the new one.
	var z cidIndex
	z.put("u", "k", 1, t0)
	z.forget("u", "k", 1)
	z.put("u", "k", 5, t0.Add(time.Minute))
	z.prune(t0.Add(cidWindow + time.Second)) // the first entry's time has passed, not the second's
	if id, ok := z.get("u", "k", t0.Add(time.Minute)); !ok || id != 5 {
		t.Errorf("re-put cid: %d %v, want 5", id, ok)
	}
}
