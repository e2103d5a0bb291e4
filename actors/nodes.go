package actors

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pandachat/pandachat/internal/guard"
	"github.com/pandachat/pandachat/protocol"
)

// Nodes is what a hub needs to share its rooms with the other nodes of a
// cluster (Options.Nodes; nil: one node, nothing of this runs).
type Nodes interface {
	Name() string             // this node
	Live() []string           // the nodes that are up, sorted
	Owner(room string) string // the live node that writes room ("" when none is)
	Conn() *nats.Conn         // this node's connection to the cluster
}

// Subjects between nodes. A room's members on every node subscribe to
// room.<name>.*: the owner's batches, counts and typing notices go to
// .all, frames for one node's members to .<node>; one subscription keeps
// them in the order the owner sent them.
const (
	subjectForward = "pc.fwd."    // pc.fwd.<owner>.<room>: a post, request/reply
	subjectRoom    = "pc.room."   // pc.room.<room>.all | .<node>
	subjectCount   = "pc.count."  // pc.count.<room>: a node's member count, heard by every hub
	subjectStart   = "pc.start"   // a node (re)started: it has no members anywhere yet
	subjectUsers   = "pc.users"   // a node's connections per user, heard by every hub (usercounts.go)
	subjectLogout  = "pc.logout"  // a session ended: every node closes its sockets
	subjectProfile = "pc.profile" // a user's new profile, for its sockets on every node
	toAll          = "all"
)

// forwardTimeout bounds the wait for the owner's answer: longer than a
// leader election of the replicated store (about 5 s), which stalls writes.
const forwardTimeout = 10 * time.Second

// livePoll is how often the hub looks at the live set of nodes.
const livePoll = 200 * time.Millisecond

// HandoverWait is how long a leaving node waits, once it said so, for every
// node to move its rooms (a few polls of the live set).
const HandoverWait = 3 * livePoll

// profileNews tells the other nodes a user's new profile.
type profileNews struct {
	Node   string `json:"o"`
	UID    string `json:"u"`
	Nick   string `json:"n"`
	Avatar string `json:"a,omitempty"`
}

// sessionEnd tells the other nodes that a session ended (a logout).
type sessionEnd struct {
	Node    string `json:"o"`
	Session string `json:"s"`
}

// fwdPost is a post forwarded to the room's owner.
type fwdPost struct {
	Node     string        `json:"o"`
	Member   string        `json:"m"`
	UID      string        `json:"u"`
	Nick     string        `json:"n"`
	Avatar   string        `json:"a,omitempty"`
	V2       bool          `json:"v2,omitempty"`
	Base     string        `json:"b,omitempty"`
	Kind     protocol.Kind `json:"k"`
	HasCID   bool          `json:"hc,omitempty"`
	CID      string        `json:"c,omitempty"`
	Content  string        `json:"t,omitempty"`
	URL      string        `json:"url,omitempty"`
	Target   uint64        `json:"tg,omitempty"`
	Emoji    string        `json:"e,omitempty"`
	Mentions string        `json:"me,omitempty"`
}

func (f *fwdPost) message() protocol.ClientMessage {
	m := protocol.ClientMessage{Kind: f.Kind, HasCID: f.HasCID, CID: f.CID, Content: f.Content, URL: f.URL}
	if f.Target != 0 || f.Emoji != "" || f.Mentions != "" {
		m.Ext = &protocol.Ext{Target: f.Target, Emoji: f.Emoji, Mentions: f.Mentions}
	}
	return m
}

// fwdReply answers a forwarded post once the owner is done with it: the id
// it was stored under (0 when none), or why it was not taken.
type fwdReply struct {
	ID    uint64 `json:"id,omitempty"`
	Again bool   `json:"again,omitempty"` // the cid was stored before as ID: echo that
	Err   string `json:"err,omitempty"`
	Moved bool   `json:"moved,omitempty"` // not the owner (any more): ask the owner of now
}

// relayMsg is what nodes say to each other about a room.
type relayMsg struct {
	T      string       `json:"t"` // see the relay* kinds
	Node   string       `json:"o"`
	Room   string       `json:"r,omitempty"` // counts only
	Msgs   []relayEntry `json:"m,omitempty"`
	Split  bool         `json:"s,omitempty"`
	N      int          `json:"n,omitempty"`
	Event  string       `json:"ev,omitempty"`
	UID    string       `json:"u,omitempty"`
	Nick   string       `json:"nk,omitempty"`
	To     string       `json:"to,omitempty"`
	Frames [][]byte     `json:"f,omitempty"`
	Epoch  int64        `json:"e,omitempty"` // counts: the sending node's run (nodeStarted)
}

const (
	relayBatch  = "b" // stored messages, in id order
	relayCount  = "c" // a node's member count (with Event: someone joined or left)
	relayTyping = "y" // a typing notice
	relayDirect = "d" // frames for one member (To) of the receiving node
)

// relayEntry is one stored message of a batch.
type relayEntry struct {
	ID     uint64          `json:"i"`
	Data   json.RawMessage `json:"d"`
	CID    string          `json:"c,omitempty"`
	From   string          `json:"f,omitempty"` // node/member that sent it
	Event  bool            `json:"e,omitempty"`
	Target uint64          `json:"tg,omitempty"` // a recall: its target and stub
	Recall json.RawMessage `json:"r,omitempty"`
}

// remotePost is a forwarded post on its way to the owner's room.
type remotePost struct {
	Room string
	Post fwdPost
	msg  *nats.Msg
}

// forwarded is the owner's answer to a post this node forwarded.
type forwarded struct {
	Post  *post
	First time.Time // when it was first forwarded
	Reply fwdReply
	Err   error
}

// reforward sends a post again to the room's owner of now.
type reforward struct{ f *forwarded }

// reforwardAfter spaces the attempts while a room moves (the live set takes
// a poll or two to agree on every node).
const reforwardAfter = 100 * time.Millisecond

// liveChanged tells the registry, then every room, that the live set moved.
type liveChanged struct{}

// nodeRuns keeps the run each node's counts are from. A node's start notice
// and its first counts travel on different subjects, so either may come first.
type nodeRuns map[string]int64

// see says whether what node said in its run epoch still counts, and whether
// that run is newer than the one its counts so far are from (they are gone).
func (r *nodeRuns) see(node string, epoch int64) (current, newer bool) {
	known := (*r)[node]
	if epoch <= known {
		return epoch == known, false
	}
	if *r == nil {
		*r = nodeRuns{}
	}
	(*r)[node] = epoch
	return true, true
}

// nodeStarted says a node (re)started: its members' counts are gone.
type nodeStarted struct {
	Node  string `json:"o"`
	Epoch int64  `json:"e"`
}

// gapCheck makes a room read the store when id has not reached it by now.
type gapCheck struct{ id uint64 }

// startRelay subscribes to the posts forwarded to this node and watches the
// live set; both end when the connection closes or stop is closed.
func (h *Hub) startRelay(stop <-chan struct{}) error {
	nodes := h.opts.Nodes
	prefix := subjectForward + nodes.Name() + "."
	root, registry := h.system.Root, h.registry
	_, err := nodes.Conn().Subscribe(prefix+"*", func(m *nats.Msg) {
		defer guard.Recover(h.log, "forwarded post", nil)
		rp := &remotePost{Room: strings.TrimPrefix(m.Subject, prefix), msg: m}
		if err := json.Unmarshal(m.Data, &rp.Post); err != nil || !protocol.ValidRoom(rp.Room) {
			respond(m, fwdReply{Err: "bad forwarded post"})
			return
		}
		root.Send(registry, rp)
	})
	if err != nil {
		return err
	}
	// Every hub keeps every room's counts (the registry), so that a room that
	// starts here knows at once how many members it has elsewhere.
	_, err = nodes.Conn().Subscribe(subjectCount+"*", func(m *nats.Msg) {
		defer guard.Recover(h.log, "room count", nil)
		rm := &relayMsg{}
		if err := json.Unmarshal(m.Data, rm); err != nil || rm.Node == nodes.Name() || rm.T != relayCount {
			return
		}
		rm.Room = strings.TrimPrefix(m.Subject, subjectCount)
		root.Send(registry, rm)
	})
	if err != nil {
		return err
	}
	if err = h.hearNotices(); err != nil {
		return err
	}
	b, _ := json.Marshal(nodeStarted{Node: nodes.Name(), Epoch: h.epoch})
	if err = nodes.Conn().Publish(subjectStart, b); err != nil {
		return err
	}
	go func() {
		defer guard.Recover(h.log, "live nodes watch", nil)
		t := time.NewTicker(livePoll)
		defer t.Stop()
		live := nodes.Live()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			if now := nodes.Live(); !slices.Equal(now, live) {
				h.log.Info("cluster: live nodes changed; rooms move", "live", now, "before", live)
				live = now
				root.Send(registry, liveChanged{})
				root.Send(h.users, liveChanged{})
			}
		}
	}()
	return nil
}

// hearNotices hands what the other nodes tell every node to the actors it is for.
func (h *Hub) hearNotices() error {
	root, registry, users := h.system.Root, h.registry, h.users
	return errors.Join(
		hear(h, subjectUsers, "user counts", func(uc *userCounts) {
			if uc.Node != "" {
				root.Send(users, uc)
			}
		}),
		hear(h, subjectProfile, "profile change", func(p *profileNews) {
			if p.UID != "" {
				root.Send(users, &profileHeard{UID: p.UID, Profile: profile{p.Nick, p.Avatar}})
			}
		}),
		hear(h, subjectLogout, "logout", func(e *sessionEnd) {
			if e.Session != "" {
				root.Send(users, &endSession{ID: e.Session})
			}
		}),
		// A node killed and started again within the 4 s that count it down
		// never left the live set: its old counts go when it says it started.
		hear(h, subjectStart, "node start", func(s *nodeStarted) {
			if s.Node != "" {
				root.Send(registry, *s)
				root.Send(users, *s)
			}
		}),
	)
}

// notice is what one node tells the others; from names the node.
type notice interface{ from() string }

func (m *userCounts) from() string  { return m.Node }
func (m *profileNews) from() string { return m.Node }
func (m *sessionEnd) from() string  { return m.Node }
func (m *nodeStarted) from() string { return m.Node }

// hear subscribes to subject and hands each notice of another node, decoded
// into a T, to take; one that does not decode, or is this node's own, is dropped.
func hear[T any, PT interface {
	*T
	notice
}](h *Hub, subject, what string, take func(PT)) error {
	nodes := h.opts.Nodes
	_, err := nodes.Conn().Subscribe(subject, func(m *nats.Msg) {
		defer guard.Recover(h.log, what, nil)
		v := PT(new(T))
		if json.Unmarshal(m.Data, v) == nil && v.from() != nodes.Name() {
			take(v)
		}
	})
	return err
}

// publishProfile tells the other nodes a user's new profile.
func (h *Hub) publishProfile(uid string, p profile) {
	if nodes := h.opts.Nodes; nodes != nil {
		h.tellNodes(subjectProfile, profileNews{Node: nodes.Name(), UID: uid, Nick: p.NickName, Avatar: p.AvatarURL},
			"of a profile change: the user's sockets there keep the old one until they reconnect")
	}
}

// publishLogout tells the other nodes that a session ended.
func (h *Hub) publishLogout(sessionID string) {
	if nodes := h.opts.Nodes; nodes != nil {
		h.tellNodes(subjectLogout, sessionEnd{Node: nodes.Name(), Session: sessionID},
			"of a logout: their sockets of the session close when it expires")
	}
}

// tellNodes publishes v on subject; lost says what the others then miss.
func (h *Hub) tellNodes(subject string, v any, lost string) {
	b, err := json.Marshal(v)
	if err == nil {
		err = h.opts.Nodes.Conn().Publish(subject, b)
	}
	if err != nil {
		h.log.Warn("cluster: the other nodes were not told "+lost, "err", err)
	}
}

func respond(m *nats.Msg, r fwdReply) {
	b, _ := json.Marshal(r)
	_ = m.Respond(b)
}

// directSink stands for a member of another node in its room's owner: what
// the room sends it (refusals) goes to its node. Nothing with an id goes this
// way: that node delivers ids in order (see again).
type directSink struct {
	nc      *nats.Conn
	subject string
	node    string // the owner, as the sender
	to      string
}

func (s *directSink) Send(frames ...[]byte) bool {
	b, _ := json.Marshal(relayMsg{T: relayDirect, Node: s.node, To: s.to, Frames: frames})
	_ = s.nc.Publish(s.subject, b)
	return true
}

// Close passes last on; the member's own node closes its socket.
func (s *directSink) Close(_ int, _ string, last ...[]byte) {
	if len(last) > 0 {
		s.Send(last...)
	}
}

// relayReply is the pending answer to a forwarded post: sent when the room is
// done with it (Member.done).
type relayReply struct {
	msg   *nats.Msg
	id    uint64
	again bool
	sent  bool
}

func (r *relayReply) finish() {
	if r.sent {
		return
	}
	r.sent = true
	respond(r.msg, fwdReply{ID: r.id, Again: r.again})
}
