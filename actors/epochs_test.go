package actors

import (
	"testing"
)

// A restarted node's start notice and its first counts travel on different
// subjects, so they may arrive in either order: counts of its new run are
// kept whichever comes first, and a late count of its old run is not.
func TestCountsOfANewRunInAnyOrder(t *testing.T) {
	tc := newTestCluster(t, "b", "x")
	tc.place([]string{"b", "x"}, "q", "x")
	hb := tc.hubWith(t, "b", Options{Store: badger(t), Rate: Rate{Off: true}, MaxConnsPerUser: 5})
	room := func(name string, n int, epoch int64) {
		tc.publish(t, subjectCount+name, relayMsg{T: relayCount, Node: "x", N: n, Epoch: epoch})
	}
	users := func(uid string, n int, epoch int64) {
		if err := tc.nc.Publish(subjectUsers, mustJSON(t, userCounts{Node: "x", Epoch: epoch, Conns: map[string]int{uid: n}})); err != nil {
			t.Fatal(err)
		}
	}
	room("q", 2, 1)
	users("u", 2, 1)
	waitFor(t, func() bool { return systemNum(t, hb, "q") == 3 })
	waitTally(t, hb, "u", func(n userTally) bool { return n.Elsewhere == 2 })

	// x runs again: its first counts come before its start notice.
	room("q", 4, 2)
	users("u", 3, 2)
	if err := tc.nc.Publish(subjectStart, mustJSON(t, nodeStarted{Node: "x", Epoch: 2})); err != nil {
		t.Fatal(err)
	}
	room("q", 7, 1) // stragglers of the old run
	users("u", 1, 1)
	room("z", 1, 2) // heard after them on the same subscriptions
	users("w", 1, 2)
	waitFor(t, func() bool { return systemNum(t, hb, "z") == 2 })
	waitTally(t, hb, "w", func(n userTally) bool { return n.Elsewhere == 1 })
	if n := systemNum(t, hb, "q"); n != 5 {
		t.Errorf("room count %v after x's new run, want 5 (4 there and the probe)", n)
	}
	if n := tallyOf(t, hb, "u"); n.Elsewhere != 3 {
		t.Errorf("user's sockets on x %d, want 3", n.Elsewhere)
	}
}
