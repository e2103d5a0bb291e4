package actors

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/nats-io/nats.go"

	"github.com/pandachat/pandachat/internal/guard"
	"github.com/pandachat/pandachat/persistence"
	"github.com/pandachat/pandachat/protocol"
)

// A room in a cluster runs on every node where it has members. The one on the
// room's owner (placement over the live nodes) assigns ids and writes; the
// others forward their members' posts to it and deliver what it publishes.
// Correctness does not rest on placement: the store refuses a write from a
// stale owner (persistence.ErrConflict), and the room then reads what is there.

var errTakeOver = errors.New("the room moved to this node: reading what the store holds first")

// clustered reports whether the room shares itself with other nodes.
func (r *room) clustered() bool { return r.hub.opts.Nodes != nil }

// owns reports whether this node writes the room.
func (r *room) owns() bool { return !r.clustered() || r.owner == r.self }

var errCutOff = errors.New("this node is cut off from the other nodes: nothing can be confirmed")

// cutOff says errCutOff when this node is not among the live nodes (its own
// heartbeat is not stored): a store call would only wait out its timeout.
func (r *room) cutOff() error {
	if r.clustered() && !slices.Contains(r.hub.opts.Nodes.Live(), r.self) {
		return errCutOff
	}
	return nil
}

// online is the room's member count over every node.
func (r *room) online() int {
	n := len(r.members)
	for _, c := range r.remote {
		n += c
	}
	return n
}

// join the room's subject before anything is read from the store, so that
// nothing published after the read is missed.
func (r *room) subscribe(ctx actor.Context) {
	nodes := r.hub.opts.Nodes
	r.self, r.owner = nodes.Name(), nodes.Owner(r.name)
	if r.remote == nil {
		r.remote = map[string]int{}
	}
	self, root, me := ctx.Self(), ctx.ActorSystem().Root, r.self
	prefix := subjectRoom + r.name + "."
	sub, err := nodes.Conn().Subscribe(prefix+"*", func(m *nats.Msg) {
		defer guard.Recover(r.hub.log, "room relay", nil)
		if to := strings.TrimPrefix(m.Subject, prefix); to != toAll && to != me {
			return
		}
		rm := &relayMsg{}
		if err := json.Unmarshal(m.Data, rm); err != nil || rm.Node == me {
			return
		}
		root.Send(self, rm)
	})
	if err != nil {
		r.hub.log.Error("room cannot hear the other nodes", "room", r.name, "err", err)
		return
	}
	r.sub = sub
	// What was published before the other nodes knew of this subscription
	// (it takes a moment to reach them) is read from the store.
	time.AfterFunc(gapWait, func() { root.Send(self, gapCheck{}) })
}

func (r *room) unsubscribe() {
	if r.sub != nil {
		_ = r.sub.Unsubscribe()
	}
}

// publish tells the room's other nodes m.
func (r *room) publish(m relayMsg) {
	if !r.clustered() {
		return
	}
	m.Node = r.self
	subject := subjectRoom + r.name + "." + toAll
	if m.T == relayCount {
		subject = subjectCount + r.name
	}
	b, err := json.Marshal(&m)
	if err == nil {
		err = r.hub.opts.Nodes.Conn().Publish(subject, b)
	}
	if err != nil {
		r.hub.log.Warn("room could not tell the other nodes", "room", r.name, "what", m.T, "err", err)
	}
}

// relayChunk bounds the stored bytes of one published batch, well under the
// NATS payload limit (1 MB) once encoded; a bigger batch goes in pieces, in order.
const relayChunk = 256 << 10

// publishBatch gives the other nodes a stored batch: the owner's fan-out,
// encoded once per node by each of them.
func (r *room) publishBatch(batch []pendingMsg, split bool) {
	if !r.clustered() || len(batch) == 0 {
		return
	}
	for len(batch) > 0 {
		n, size := 0, 0
		for n < len(batch) && (n == 0 || size+len(batch[n].data) <= relayChunk) {
			size += len(batch[n].data)
			n++
		}
		r.publishPart(batch[:n], split)
		batch = batch[n:]
	}
}

func (r *room) publishPart(batch []pendingMsg, split bool) {
	msgs := make([]relayEntry, len(batch))
	for i := range batch {
		pm := &batch[i]
		e := relayEntry{ID: pm.id, Data: pm.data, Event: pm.effect != nil}
		if pm.cid != nil {
			e.CID = *pm.cid
		}
		switch {
		case pm.from == nil:
		case pm.from.relay != nil:
			e.From = pm.from.ID // node/member already
		default:
			e.From = r.self + "/" + pm.from.ID
		}
		if pm.effect != nil && pm.effect.Recall != nil {
			e.Target, e.Recall = pm.effect.Target, pm.effect.Recall
		}
		msgs[i] = e
	}
	r.publish(relayMsg{T: relayBatch, Msgs: msgs, Split: split})
}

// publishCount tells the other nodes how many members this node has; event
// (join or leave, of who) makes them send presence frames.
func (r *room) publishCount(event string, who *Member) {
	if !r.clustered() {
		return
	}
	m := relayMsg{T: relayCount, N: len(r.members), Event: event, Epoch: r.hub.epoch}
	if who != nil {
		m.UID, m.Nick = who.UID, who.NickName
	}
	r.publish(m)
}

// relayed handles what another node said about the room.
func (r *room) relayed(ctx actor.Context, m *relayMsg) {
	switch m.T {
	case relayBatch:
		r.relayedBatch(ctx, m)
	case relayCount:
		if m.N > 0 {
			r.remote[m.Node] = m.N
		} else {
			delete(r.remote, m.Node)
		}
		if m.Event != "" {
			r.presenceOf(nil, m.Event, m.UID, m.Nick)
		}
	case relayTyping:
		r.sendTyping(m.UID, m.Nick)
	case relayDirect:
		if i, ok := r.index[m.To]; ok && len(m.Frames) > 0 {
			r.members[i].Sink.Send(m.Frames...)
		}
	}
}

// relayedBatch delivers the owner's batch to this node's members, after
// whatever this node missed before it (read from the store, as replays are).
func (r *room) relayedBatch(ctx actor.Context, m *relayMsg) {
	if len(m.Msgs) == 0 {
		return
	}
	first, last := m.Msgs[0].ID, m.Msgs[len(m.Msgs)-1].ID
	if r.owns() {
		// Another node wrote the room (placement moved and back, or it was
		// paused): read the store before taking the next post.
		if last > r.stored && r.broken == nil {
			r.broken, r.retryAt = errTakeOver, time.Time{}
			r.healthy(ctx)
		}
		return
	}
	if !r.known { // the start could not read the store: all before this is history
		r.stored, r.lastID, r.known = first-1, first-1, true
	}
	if last <= r.stored {
		return
	}
	if first > r.stored+1 && !r.catchUp(ctx, first-1) {
		return
	}
	batch := make([]pendingMsg, 0, len(m.Msgs))
	now := r.hub.now()
	for _, e := range m.Msgs {
		if e.ID <= r.stored {
			continue
		}
		pm := pendingMsg{id: e.ID, data: e.Data, uid: uidOf(e.Data)}
		if e.CID != "" {
			cid := e.CID
			pm.cid = &cid
			if at := time.UnixMilli(protocol.StoredTime(e.Data)); now.Sub(at) <= cidWindow {
				r.cids.put(pm.uid, cid, e.ID, at) // known if this node takes the room over
			}
			r.echoTo(&pm, cid)
		}
		if id, ok := strings.CutPrefix(e.From, r.self+"/"); ok {
			if i, ok := r.index[id]; ok {
				pm.from = r.members[i]
			}
		}
		if e.Event {
			pm.effect = &persistence.Effect{Target: e.Target, Recall: e.Recall}
		}
		batch = append(batch, pm)
	}
	r.stored, r.lastID = last, last
	deliveries := r.fanout(ctx, batch, m.Split)
	r.hub.obs.Broadcast(len(batch), deliveries, 0)
	for _, pm := range batch {
		r.tail.push(tailMsg{id: pm.id, data: pm.data, uid: pm.uid})
	}
	if m.Split {
		r.applyStored(batch)
	}
}

// catchUp delivers what the store holds beyond what this node delivered, up
// to upTo (0: the room's last id). When the store cannot say, the members are
// closed with 1011: they come back with since and get a replay, never a gap.
func (r *room) catchUp(ctx actor.Context, upTo uint64) bool {
	var err error
	if upTo == 0 {
		if upTo, err = r.hub.store.LastID(r.name); err != nil {
			r.hub.log.Warn("room could not read its last id from the store", "room", r.name, "err", err)
			return false
		}
	}
	if upTo <= r.stored {
		return true
	}
	msgs, err := r.hub.store.MessagesAfter(r.name, r.stored, int(upTo-r.stored))
	if err == nil && (len(msgs) == 0 || msgs[len(msgs)-1].ID < upTo) {
		err = errors.New("the store holds fewer messages than the room's last id")
	}
	if err != nil {
		r.hub.log.Error("room missed messages and cannot read them; closing its members", "room", r.name, "err", err)
		for _, m := range r.members {
			m.close(protocol.CloseInternal, "history unavailable, reconnect with since")
		}
		r.tail = newTail(r.hub.opts.TailSize) // replays read the store from here on
		r.stored, r.lastID = upTo, upTo
		return false
	}
	r.deliverStored(ctx, msgs)
	r.lastID = r.stored
	return true
}

// forward sends a member's post to the room's owner; the answer comes back
// as forwarded. The echo comes with the owner's batch, like everyone's copy;
// should the message reach this node another way (read from the store: the
// owner stopped before it published, or the room moved here), awaiting
// still knows whose echo it is.
func (r *room) forward(ctx actor.Context, p *post) {
	if p.Msg.HasCID {
		if r.awaiting == nil {
			r.awaiting = map[cidKey]*Member{}
		}
		r.awaiting[cidKey{p.From.UID, p.Msg.CID}] = p.From
	}
	r.sendForward(ctx, &forwarded{Post: p, First: time.Now()})
}

// echoTo makes pm, a message of this room with cid, the echo of the post
// this node forwarded with that cid, if it did.
func (r *room) echoTo(pm *pendingMsg, cid string) {
	k := cidKey{pm.uid, cid}
	from, ok := r.awaiting[k]
	if !ok {
		return
	}
	delete(r.awaiting, k)
	if _, member := r.index[from.ID]; member {
		pm.from, pm.cid = from, &cid
	}
}

func (r *room) sendForward(ctx actor.Context, res *forwarded) {
	p := res.Post
	if r.owner == "" {
		p.From.done()
		r.refuse(p.From, p.Msg.CIDRef(), "room unavailable: no node can take posts right now")
		return
	}
	f := fwdPost{Node: r.self, Member: p.From.ID, UID: p.From.UID, Nick: p.NickName, Avatar: p.AvatarURL,
		V2: p.From.V2, Base: p.From.Base, Kind: p.Msg.Kind, HasCID: p.Msg.HasCID, CID: p.Msg.CID,
		Content: p.Msg.Content, URL: p.Msg.URL}
	if e := p.Msg.Ext; e != nil {
		f.Target, f.Emoji, f.Mentions = e.Target, e.Emoji, e.Mentions
	}
	data, err := json.Marshal(&f)
	if err != nil {
		p.From.done()
		r.refuse(p.From, p.Msg.CIDRef(), "message not stored: "+err.Error())
		return
	}
	nc, subject := r.hub.opts.Nodes.Conn(), subjectForward+r.owner+"."+r.name
	self, root, log := ctx.Self(), ctx.ActorSystem().Root, r.hub.log
	wait := forwardTimeout - time.Since(res.First)
	res.Reply, res.Err = fwdReply{}, nil
	go func() {
		defer guard.Recover(log, "forward a post", func(any) {
			res.Err = errors.New("forwarding failed")
			root.Send(self, res)
		})
		msg, err := nc.Request(subject, data, max(wait, reforwardAfter))
		if err == nil {
			err = json.Unmarshal(msg.Data, &res.Reply)
		}
		res.Err = err
		root.Send(self, res)
	}()
}

// forwarded settles a forwarded post: a room on the move or an owner gone
// (no responders) is asked again, the owner of then, until forwardTimeout;
// a refusal goes to its sender; a stored post that has not come with a batch
// by gapWait is read from the store.
func (r *room) forwarded(ctx actor.Context, m *forwarded) {
	from := m.Post.From
	if _, ok := r.index[from.ID]; !ok {
		from.done()
		return
	}
	moving := m.Reply.Moved || errors.Is(m.Err, nats.ErrNoResponders)
	if moving && time.Since(m.First) < forwardTimeout-reforwardAfter {
		self, root := ctx.Self(), ctx.ActorSystem().Root
		time.AfterFunc(reforwardAfter, func() { root.Send(self, reforward{m}) })
		return
	}
	if p := m.Post; p.Msg.HasCID && (m.Reply.ID == 0 || m.Reply.Again || m.Reply.ID <= r.stored) {
		delete(r.awaiting, cidKey{p.From.UID, p.Msg.CID}) // refused, or delivered already
	}
	if m.Err == nil && m.Reply.Again && m.Reply.ID > 0 {
		// A re-sent cid: its echo comes after everything before its id here,
		// never ahead of a batch this node has not had yet.
		if m.Reply.ID > r.stored && !r.catchUp(ctx, m.Reply.ID) {
			from.done() // its members are closed with 1011: they come back with since
			return
		}
		r.again(from, m.Reply.ID, m.Post.Msg.CID)
		return
	}
	defer from.done()
	switch {
	case moving || m.Err != nil:
		r.hub.log.Warn("no node answered a forwarded post", "room", r.name, "owner", r.owner, "err", forwardErr(m))
		r.refuse(from, m.Post.Msg.CIDRef(), "message not confirmed: the room's node did not answer; send it again")
	case m.Reply.Err != "":
		r.refuse(from, m.Post.Msg.CIDRef(), "message not stored: "+m.Reply.Err)
	case m.Reply.ID > r.stored:
		self, root, id := ctx.Self(), ctx.ActorSystem().Root, m.Reply.ID
		time.AfterFunc(gapWait, func() { root.Send(self, gapCheck{id}) })
	}
}

// reforwarded sends a post again, or takes it here when the room moved here.
func (r *room) reforwarded(ctx actor.Context, m *forwarded) {
	if _, ok := r.index[m.Post.From.ID]; !ok {
		m.Post.From.done()
		return
	}
	if r.owns() {
		if p := m.Post; p.Msg.HasCID {
			delete(r.awaiting, cidKey{p.From.UID, p.Msg.CID}) // stored here, echoed here
		}
		r.post(ctx, m.Post)
		return
	}
	r.sendForward(ctx, m)
}

func forwardErr(m *forwarded) string {
	switch {
	case m.Reply.Moved:
		return "the room kept moving"
	case errors.Is(m.Err, nats.ErrNoResponders):
		return "no node answers for the room (it is moving)"
	case m.Err != nil:
		return m.Err.Error()
	}
	return ""
}

// gapWait is how long a stored post's batch may take to arrive from its
// owner before this node reads it from the store.
const gapWait = time.Second

// remotePost takes a post another node forwarded to this one, the owner.
func (r *room) remotePost(ctx actor.Context, m *remotePost) {
	r.joins++
	if !r.owns() {
		respond(m.msg, fwdReply{Moved: true}) // its node asks the owner of now
		return
	}
	if len(r.members) == 0 {
		r.armIdle(ctx) // remote posters keep the room alive
	}
	f := &m.Post
	from := &Member{ID: f.Node + "/" + f.Member, UID: f.UID, NickName: f.Nick, V2: f.V2, Base: f.Base,
		Sink:  &directSink{nc: r.hub.opts.Nodes.Conn(), subject: subjectRoom + r.name + "." + f.Node, node: r.self, to: f.Member},
		relay: &relayReply{msg: m.msg}}
	r.post(ctx, &post{From: from, NickName: f.Nick, AvatarURL: f.Avatar, Msg: f.message()})
}

// placement follows a change of the live nodes: the room may move here (read
// the store before the next post) or away (store what is pending first).
func (r *room) placement(ctx actor.Context) {
	nodes := r.hub.opts.Nodes
	was := r.owns()
	r.owner = nodes.Owner(r.name)
	live := nodes.Live()
	for n := range r.remote {
		if !slices.Contains(live, n) {
			delete(r.remote, n)
		}
	}
	switch now := r.owns(); {
	case was && !now:
		r.flush(ctx)
		r.lastID = r.stored
		r.reacts = nil // the new owner changes them from now on: read them again if they come back here
	case !was && now && r.broken == nil:
		r.broken, r.retryAt = errTakeOver, time.Time{}
	}
	if !r.owns() {
		r.catchUp(ctx, 0) // a batch the old owner stored and never published
	}
	if len(r.members) > 0 {
		r.publishCount("", nil)
	}
}
