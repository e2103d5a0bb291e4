package actors

import (
	"fmt"
	"testing"
	"time"
)

// A cid is kept for exactly cidWindow: a prune at the window's last instant
// keeps it, as get still answers then.
func TestCIDKeptToTheEndOfTheWindow(t *testing.T) {
	var x cidIndex
	t0 := time.Unix(1700000000, 0)
	x.put("u", "a", 1, t0)
	x.put("v", "b", 2, t0.Add(cidWindow)) // prunes at t0+cidWindow
	if id, ok := x.get("u", "a", t0.Add(cidWindow)); !ok || id != 1 {
		t.Errorf("at the window's end: %d %v, want 1", id, ok)
	}
}

// The order list is compacted when more than 64 of its entries are dead and
// they are more than half of it; not before.
func TestCIDOrderCompaction(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	later := t0.Add(cidWindow + time.Second)
	fill := func(x *cidIndex, n int, at time.Time, prefix string) {
		for i := range n {
			x.put("u", fmt.Sprint(prefix, i), uint64(i+1), at)
		}
	}
	for _, tc := range []struct {
		dead, live int // entries put at t0, then within the window
		head, n    int // after one more put past the first ones' window
	}{
		{dead: 64, head: 64, n: 65},              // 64 dead: not compacted
		{dead: 65, head: 0, n: 1},                // 65 dead, more than half: compacted
		{dead: 100, live: 99, head: 100, n: 200}, // exactly half dead: not compacted
		{dead: 100, live: 98, head: 0, n: 99},    // more than half: compacted
	} {
		var x cidIndex
		fill(&x, tc.dead, t0, "d")
		fill(&x, tc.live, t0.Add(time.Minute), "l")
		x.put("u", "last", 1, later)
		if x.head != tc.head || len(x.order) != tc.n {
			t.Errorf("%d dead, %d live: head %d of %d, want %d of %d", tc.dead, tc.live, x.head, len(x.order), tc.head, tc.n)
		}
		if len(x.ids) != tc.live+1 {
			t.Errorf("%d dead, %d live: %d ids kept", tc.dead, tc.live, len(x.ids))
		}
	}
}
