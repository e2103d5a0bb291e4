package actors

import (
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/nats-io/nats.go"
	"golang.org/x/time/rate"
)

// Per-user limits over a cluster. Each node's users actor tells the others
// (pc.users) how many connections a user has on it whenever that changes, and
// keeps theirs: the connection cap counts them all, and the rate is shared
// out among the nodes where the user has connections. Nothing per message.

// userCounts is how many connections users have on a node (0: none any more).
// All: these are all of the node's users with connections, forget the others
// (a full account goes in pieces: the first one says All).
type userCounts struct {
	Node  string         `json:"o"`
	Epoch int64          `json:"e,omitempty"` // the node's run (nodeStarted)
	Conns map[string]int `json:"c,omitempty"`
	All   bool           `json:"all,omitempty"`
}

// countsPerMessage keeps a full account's pieces well under the NATS payload limit.
const countsPerMessage = 1000

// userConns asks what this node knows of a user's connections; answered with userTally.
type userConns struct{ UID string }

type userTally struct {
	Here      int // on this node
	Elsewhere int // on the other nodes, as last heard
	Nodes     int // other nodes where the user has connections
	Known     int // users with connections elsewhere, all told
}

// leaving makes a stopping node tell the others it has no connections, and
// say nothing more; answered when done.
type leaving struct{}

// clusterMessage handles what users hears of the other nodes.
func (u *users) clusterMessage(ctx actor.Context, m any) {
	switch m := m.(type) {
	case *userCounts:
		if u.current(m.Node, m.Epoch) {
			u.heard(m)
		}
	case nodeStarted:
		u.current(m.Node, m.Epoch)
	case liveChanged:
		live := u.hub.opts.Nodes.Live()
		u.drop(func(node string) bool { return !slices.Contains(live, node) })
		if slices.ContainsFunc(live, func(n string) bool { return !slices.Contains(u.live, n) }) {
			u.tellAll() // a node that joins never heard ours, or dropped them while apart
		}
		u.live = live
	case *userConns:
		t := userTally{Elsewhere: u.elsewhere(m.UID), Nodes: len(u.others[m.UID]), Known: len(u.others)}
		if st := u.byUID[m.UID]; st != nil {
			t.Here = st.conns
		}
		ctx.Respond(t)
	case leaving:
		if u.clustered() {
			u.publish(&userCounts{All: true})
		}
		u.left = true
		ctx.Respond(true)
	}
}

func (u *users) clustered() bool { return u.hub.opts.Nodes != nil && !u.left }

// current says whether what node said in its run epoch still counts. A
// newer run has no connections of the older one and knows nothing of ours.
func (u *users) current(node string, epoch int64) bool {
	current, newer := u.runs.see(node, epoch)
	if newer {
		u.drop(func(n string) bool { return n == node })
		u.tellAll()
	}
	return current
}

// elsewhere is the user's connections on the other nodes.
func (u *users) elsewhere(uid string) int {
	n := 0
	for _, c := range u.others[uid] {
		n += c
	}
	return n
}

// tell gives the other nodes the user's count here.
func (u *users) tell(uid string, conns int) {
	if u.clustered() {
		u.publish(&userCounts{Conns: map[string]int{uid: max(conns, 0)}})
	}
}

// tellAll gives the other nodes every count here.
func (u *users) tellAll() {
	if !u.clustered() {
		return
	}
	m := &userCounts{Conns: map[string]int{}, All: true}
	for uid, st := range u.byUID {
		if st.conns <= 0 {
			continue
		}
		if len(m.Conns) == countsPerMessage {
			u.publish(m)
			m = &userCounts{Conns: map[string]int{}}
		}
		m.Conns[uid] = st.conns
	}
	u.publish(m)
}

func (u *users) publish(m *userCounts) {
	nodes := u.hub.opts.Nodes
	m.Node, m.Epoch = nodes.Name(), u.hub.epoch
	b, err := json.Marshal(m)
	if err == nil {
		err = nodes.Conn().Publish(subjectUsers, b)
	}
	if err != nil && !errors.Is(err, nats.ErrConnectionClosed) { // closed: the node is stopping
		u.hub.log.Warn("cluster: the other nodes were not told a user's connections", "err", err)
	}
}

// heard keeps another node's counts.
func (u *users) heard(m *userCounts) {
	if m.All {
		u.drop(func(node string) bool { return node == m.Node })
	}
	for uid, n := range m.Conns {
		c := u.others[uid]
		switch {
		case n > 0 && c == nil:
			if u.others == nil {
				u.others = map[string]map[string]int{}
			}
			u.others[uid] = map[string]int{m.Node: n}
		case n > 0:
			c[m.Node] = n
		default:
			delete(c, m.Node)
			if len(c) == 0 {
				delete(u.others, uid)
			}
		}
		u.reshare(uid)
	}
}

// drop forgets the counts of the nodes gone says.
func (u *users) drop(gone func(node string) bool) {
	for uid, c := range u.others {
		n := len(c)
		maps.DeleteFunc(c, func(node string, _ int) bool { return gone(node) })
		if len(c) == 0 {
			delete(u.others, uid)
		}
		if len(c) != n {
			u.reshare(uid)
		}
	}
}

// share is how many nodes the user's rate is divided among: this one and
// every other where it has connections.
func (u *users) share(uid string) int { return 1 + len(u.others[uid]) }

// reshare gives the user's limiter here its share of the rate anew.
func (u *users) reshare(uid string) {
	st := u.byUID[uid]
	if st == nil || st.limiter == nil {
		return
	}
	if n := u.share(uid); n != st.share {
		st.share = n
		r, now := u.hub.opts.Rate.Or(defaultRate), u.hub.now()
		st.limiter.SetLimitAt(now, limitOf(r, n))
		st.limiter.SetBurstAt(now, burstOf(r, n)) // tokens above it go at once
	}
}

// limitOf and burstOf are one node's share of r among n: together they stay
// within r (at least one message each).
func limitOf(r Rate, n int) rate.Limit {
	return rate.Every(r.Per * time.Duration(n) / time.Duration(r.Messages))
}

func burstOf(r Rate, n int) int { return max(1, r.Messages/n) }
