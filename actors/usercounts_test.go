package actors

import (
	"encoding/json"
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pandachat/pandachat/protocol"
)

// tallyOf is what hub knows of uid's connections.
func tallyOf(t *testing.T, hub *Hub, uid string) userTally {
	t.Helper()
	res, err := hub.system.Root.RequestFuture(hub.users, &userConns{UID: uid}, 5*time.Second).Result()
	if err != nil {
		t.Fatal(err)
	}
	return res.(userTally)
}

// waitTally waits until what hub knows of uid passes ok.
func waitTally(t *testing.T, hub *Hub, uid string, ok func(userTally) bool) {
	t.Helper()
	waitFor(t, func() bool { return ok(tallyOf(t, hub, uid)) })
}

func refused(t *testing.T, hub *Hub, uid, room, why string) {
	t.Helper()
	if _, err := hub.Connect(ConnSpec{UID: uid, Room: room, Sink: &captureSink{}}); !errors.Is(err, ErrTooManyConnections) {
		t.Fatalf("%s: %v, want ErrTooManyConnections", why, err)
	}
}

// nextCounts is the next userCounts on sub that node said.
func nextCounts(t *testing.T, sub *nats.Subscription, node string) *userCounts {
	t.Helper()
	for {
		m := next(t, sub)
		uc := &userCounts{}
		if err := json.Unmarshal(m.Data, uc); err != nil {
			t.Fatalf("%q: %v", m.Data, err)
		}
		if uc.Node == node {
			return uc
		}
	}
}

func (uc *userCounts) is(all bool, conns map[string]int) bool {
	return uc.All == all && maps.Equal(uc.Conns, conns)
}

// The cap counts a user's connections on every node: a node refuses one
// when another holds the cap, and admits it again once that one has
// released a connection; a stopping node's connections stop counting.
func TestConnectionCapOverNodes(t *testing.T) {
	tc := newTestCluster(t, "a", "b")
	tc.place([]string{"a", "b"}, "ra", "a", "rb", "b")
	o := Options{Store: badger(t), Rate: Rate{Off: true}, MaxConnsPerUser: 2}
	hb := tc.hubWith(t, "b", o)
	o.Nodes = testNode{tc, "a"}
	ha := NewHub(o)
	stopped := false // below; twice panics
	t.Cleanup(func() {
		if !stopped {
			ha.Shutdown(5 * time.Second)
		}
	})

	a1 := connect(t, ha, ConnSpec{UID: "u", Room: "ra", Sink: &captureSink{}})
	connect(t, ha, ConnSpec{UID: "u", Room: "ra", Sink: &captureSink{}})
	waitTally(t, hb, "u", func(n userTally) bool { return n.Elsewhere == 2 })
	refused(t, hb, "u", "rb", "on b while a holds the cap")
	connect(t, hb, ConnSpec{UID: "v", Room: "rb", Sink: &captureSink{}}) // per user

	a1.Closed()
	waitTally(t, hb, "u", func(n userTally) bool { return n.Elsewhere == 1 })
	connect(t, hb, ConnSpec{UID: "u", Room: "rb", Sink: &captureSink{}})
	waitTally(t, ha, "u", func(n userTally) bool { return n.Here == 1 && n.Elsewhere == 1 })
	refused(t, ha, "u", "ra", "on a while a and b hold one each")

	// A stopping node says it has none: its sockets close with the process.
	stopped = true
	if err := ha.Shutdown(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	waitTally(t, hb, "u", func(n userTally) bool { return n.Elsewhere == 0 && n.Known == 0 })
	connect(t, hb, ConnSpec{UID: "u", Room: "rb", Sink: &captureSink{}})
}

// Another node's counts go when it says it started again, when it is no
// longer live, and when they reach 0; a node that started, or that is back
// in the live set, is told every count of this node. The other node is
// played by the test.
func TestUserCountsOfGoneNodes(t *testing.T) {
	tc := newTestCluster(t, "b", "x")
	tc.place([]string{"b", "x"}, "rb", "b")
	said := tc.listen(t, subjectUsers)
	hb := tc.hubWith(t, "b", Options{Store: badger(t), Rate: Rate{Off: true}, MaxConnsPerUser: 3})
	epoch := int64(0) // x's run
	x := func(n int) {
		t.Helper()
		b, _ := json.Marshal(&userCounts{Node: "x", Epoch: epoch, Conns: map[string]int{"u": n}})
		if err := tc.nc.Publish(subjectUsers, b); err != nil {
			t.Fatal(err)
		}
	}

	connect(t, hb, ConnSpec{UID: "u", Room: "rb", Sink: &captureSink{}})
	if got := nextCounts(t, said, "b"); !got.is(false, map[string]int{"u": 1}) {
		t.Errorf("b on a connection: %+v", got)
	}
	x(2)
	waitTally(t, hb, "u", func(n userTally) bool { return n.Elsewhere == 2 })
	refused(t, hb, "u", "rb", "with one here and two on x")

	epoch = 1 // x starts again
	if err := tc.nc.Publish(subjectStart, mustJSON(t, nodeStarted{Node: "x", Epoch: epoch})); err != nil {
		t.Fatal(err)
	}
	if got := nextCounts(t, said, "b"); !got.is(true, map[string]int{"u": 1}) {
		t.Errorf("b to a node that started: %+v, want all of its counts", got)
	}
	waitTally(t, hb, "u", func(n userTally) bool { return n.Elsewhere == 0 })
	connect(t, hb, ConnSpec{UID: "u", Room: "rb", Sink: &captureSink{}})
	nextCounts(t, said, "b")

	x(1)
	waitTally(t, hb, "u", func(n userTally) bool { return n.Elsewhere == 1 })
	refused(t, hb, "u", "rb", "with two here and one on x")
	tc.place([]string{"b"}) // x is down
	waitTally(t, hb, "u", func(n userTally) bool { return n.Elsewhere == 0 })
	connect(t, hb, ConnSpec{UID: "u", Room: "rb", Sink: &captureSink{}})
	if got := nextCounts(t, said, "b"); !got.is(false, map[string]int{"u": 3}) {
		t.Errorf("b on a connection: %+v", got)
	}

	tc.place([]string{"b", "x"}) // back: it forgot b's counts when b went out of its sight
	if got := nextCounts(t, said, "b"); !got.is(true, map[string]int{"u": 3}) {
		t.Errorf("b to a node back in the live set: %+v, want all of its counts", got)
	}
	x(1)
	waitTally(t, hb, "u", func(n userTally) bool { return n.Known == 1 })
	x(0)
	waitTally(t, hb, "u", func(n userTally) bool { return n.Known == 0 })
}

// A user's rate is shared among the nodes where it has connections: half
// the burst and half the rate on each of two, the whole again once one of
// them has none.
func TestRateSharedOverNodes(t *testing.T) {
	tc := newTestCluster(t, "a", "b")
	tc.place([]string{"a", "b"}, "ra", "a", "rb", "b")
	t0 := time.Unix(1700000000, 0)
	clock := &fakeClock{t: t0}
	o := Options{Store: badger(t), Rate: Rate{Messages: 10, Per: time.Hour}, Now: clock.now}
	ha, hb := tc.hubWith(t, "a", o), tc.hubWith(t, "b", o)
	sa, sb := &captureSink{}, &captureSink{}
	ca := connect(t, ha, ConnSpec{UID: "u", Room: "ra", Sink: sa})
	exactly(t, sa, 1)
	cb := connect(t, hb, ConnSpec{UID: "u", Room: "rb", Sink: sb})
	exactly(t, sb, 1)
	waitTally(t, ha, "u", func(n userTally) bool { return n.Nodes == 1 })
	waitTally(t, hb, "u", func(n userTally) bool { return n.Nodes == 1 })

	// allowed sends n frames (binary: refused either way, counted as any) and
	// says how many the rate let through.
	allowed := func(c *Conn, s *captureSink, n int) int {
		t.Helper()
		before := len(s.all())
		for range n {
			c.Receive([]byte("x"), true)
		}
		ok := 0
		for _, f := range exactly(t, s, before+n)[before:] {
			switch f["error"] {
			case protocol.ErrBadMessage:
				ok++
			case protocol.ErrRateLimited:
			default:
				t.Fatalf("got %v", f)
			}
		}
		return ok
	}
	if got := allowed(ca, sa, 10); got != 5 {
		t.Errorf("on a: %d of 10 let through, want 5 (half of the burst)", got)
	}
	if got := allowed(cb, sb, 10); got != 5 {
		t.Errorf("on b: %d of 10 let through, want 5 (half of the burst)", got)
	}

	clock.set(t0.Add(30 * time.Minute)) // at half the rate: 2.5 messages
	if got := allowed(ca, sa, 10); got != 2 {
		t.Errorf("on a, half an hour later: %d of 10 let through, want 2 (half the rate)", got)
	}

	cb.Closed()
	waitTally(t, ha, "u", func(n userTally) bool { return n.Nodes == 0 })
	clock.set(t0.Add(90 * time.Minute)) // time enough to fill any budget
	if got := allowed(ca, sa, 11); got != 10 {
		t.Errorf("on a alone: %d of 11 let through, want 10 (the whole burst)", got)
	}
}
