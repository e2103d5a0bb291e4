package actors

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/nats-io/nats.go"

	"github.com/pandachat/pandachat/persistence"
	"github.com/pandachat/pandachat/protocol"
)

// room is the one owner of a room's state: it alone assigns ids, keeps the
// online count, stores each batch and then fans it out.
//
// Invariant: every id ≤ stored is in the store, has been delivered to the
// members of the time, and (if the tail reaches it) is in the tail; ids above
// stored are pending. Nothing is delivered before it is stored.
type room struct {
	name    string
	hub     *Hub
	lastID  uint64      // highest id assigned
	stored  uint64      // highest id stored and delivered
	broken  error       // the store could not say what it holds: posts are refused until it can
	retryAt time.Time   // when to ask the store again
	retry   *time.Timer // asks again while broken, so that what the store holds is delivered without a post
	known   bool        // stored was read from the store (not so when that failed at start)
	loaded  bool        // the tail and the recent cids were read from the store

	members []*Member
	index   map[string]int // Member.ID → position in members
	joins   uint64         // joins handled, to agree with the registry on idleness

	pending      []pendingMsg
	spare        []pendingMsg // the other half of the double buffer
	pendingBytes int
	split        bool      // pending holds events or mentions: readers of version 1 get frames of their own
	dups         []dupEcho // re-sent cids whose original is pending
	batch        []persistence.Message
	flushing     bool
	lastFlush    time.Time
	tail         tail
	cids         cidIndex
	fan          fanScratch

	pinger    *time.Timer
	idleTimer *time.Timer
	idleGen   uint64
	trimming  bool
	trimmedTo uint64 // ids below this are gone from the store
	closing   bool

	// Several nodes (Options.Nodes): who writes the room, and the members elsewhere.
	self, owner string
	remote      map[string]int // node → its members here
	sub         *nats.Subscription
	awaiting    map[cidKey]*Member // forwarded posts with a cid whose echo has not gone out here

	reacts      map[uint64]*reactState // reactions of messages lately reacted to, pending ones included
	typingAt    map[string]time.Time   // when each user's last typing notice went out
	reads       []persistence.ReadMark // read positions to write
	readsQueued bool
}

type pendingMsg struct {
	id     uint64
	data   []byte // stored JSON object
	uid    string
	from   *Member // nil for messages read back from the store
	cid    *string
	effect *persistence.Effect // events only
}

// dupEcho is a re-send of a pending message: its sender gets the echo once
// the original is stored.
type dupEcho struct {
	to  *Member
	id  uint64
	cid string
}

// Batches are capped so that one flush allocates a bounded amount.
const (
	maxBatch      = 1024
	maxBatchBytes = 1 << 20
)

func newRoom(name string, hub *Hub) *room {
	return &room{
		name:  name,
		hub:   hub,
		index: map[string]int{},
		tail:  newTail(hub.opts.TailSize),
	}
}

func (r *room) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		r.start(ctx)
	case writeReads:
		r.writeReads()
	case *join:
		r.join(ctx, m)
	case *post:
		r.post(ctx, m)
	case flush:
		r.flush(ctx)
	case *remotePost:
		r.remotePost(ctx, m)
	case *relayMsg:
		r.relayed(ctx, m)
	case *forwarded:
		r.forwarded(ctx, m)
	case reforward:
		r.reforwarded(ctx, m.f)
	case liveChanged:
		r.placement(ctx)
	case gapCheck:
		before := r.stored
		if (m.id == 0 || m.id > before) && !r.owns() && r.catchUp(ctx, m.id) && m.id > before {
			// a stored post's batch never came: its owner stopped, or a relay was lost
			r.hub.log.Info("room read from the store what its owner did not send", "room", r.name, "from", before+1, "to", r.stored, "owner", r.owner)
		}
	case *leave:
		if i, ok := r.index[m.ID]; ok {
			r.remove(ctx, r.members[i], "")
		}
	case *kick:
		r.kick(ctx, m)
	case idleTick:
		if m.gen == r.idleGen {
			r.idle(ctx)
		}
	case trimmed:
		r.trimming = false
		r.maybeTrim(ctx) // catch up with what was stored meanwhile
	case retryTick:
		r.retry = nil
		if r.broken != nil && !r.closing {
			r.healthy(ctx)
		}
	case pingTick:
		r.ping(ctx)
		if r.clustered() && !r.owns() && len(r.members) > 0 {
			r.catchUp(ctx, 0) // a relayed batch lost on the way, in a room that went quiet after it
		}
		r.armPing(ctx, r.hub.opts.PingInterval)
	case closeRoom:
		// Posts already queued are still taken and confirmed: close behind them.
		r.closing = true
		ctx.Send(ctx.Self(), finishClose{})
	case finishClose:
		r.close(ctx)
	case *actor.Stopping:
		r.closing = true
		r.writeReads()
	case *actor.Stopped:
		if r.pinger != nil { // nil when the room failed in start, before armPing
			r.pinger.Stop()
		}
		if r.retry != nil {
			r.retry.Stop()
		}
		r.cancelIdle()
		r.unsubscribe()
		r.hub.obs.RoomStopped()
	}
	r.armRetry(ctx) // whatever broke it (a write, a take-over, another writer heard)
}

func (r *room) start(ctx actor.Context) {
	r.hub.obs.RoomStarted()
	if r.clustered() {
		r.subscribe(ctx)
	}
	last, err := r.hub.store.LastID(r.name)
	if err != nil {
		r.setBroken(err)
	} else {
		r.lastID, r.stored, r.known = last, last, true
		if err := r.loadTail(last); err != nil {
			r.setBroken(err) // without its recent cids a re-send would be stored twice
		}
	}
	r.armIdle(ctx)
	// Rooms started together (a restart's reconnects) would ping together: the
	// first ping comes at a random point of the interval's second half, the
	// next ones an interval apart.
	half := r.hub.opts.PingInterval / 2
	r.armPing(ctx, half+rand.N(half+1))
}

// loadTail reads the newest messages once, when the room starts: reconnects
// with since are then served from memory, and recent cids are known again.
// A busy room reads further back, page by page, while the messages are inside
// the cid window, up to maxCIDs messages: a restart forgets no cid a re-send
// may carry.
func (r *room) loadTail(last uint64) error {
	var pages [][]persistence.Message // newest first
	oldest := r.hub.now().Add(-cidWindow)
	for below, read := last, 0; below > 0 && read < max(r.tail.size, maxCIDs); {
		n := min(below, uint64(max(r.tail.size, loadPage)))
		msgs, err := r.hub.store.MessagesAfter(r.name, below-n, int(n))
		if err != nil {
			return fmt.Errorf("reading the room's recent messages: %w", err)
		}
		for len(msgs) > 0 && msgs[len(msgs)-1].ID > below { // a trimmed start reads on past the page
			msgs = msgs[:len(msgs)-1]
		}
		if len(msgs) == 0 {
			break
		}
		pages = append(pages, msgs)
		read += len(msgs)
		below = msgs[0].ID - 1
		if time.UnixMilli(protocol.StoredTime(msgs[0].Data)).Before(oldest) {
			break // older ones are outside the window
		}
	}
	for i := len(pages) - 1; i >= 0; i-- {
		r.remember(pages[i])
	}
	r.loaded = true
	return nil
}

// loadPage is how many messages one read of a starting room's history takes.
const loadPage = 1024

// remember puts stored messages into the tail and their cids into the index.
func (r *room) remember(msgs []persistence.Message) {
	now := r.hub.now()
	for _, m := range msgs {
		uid := uidOf(m.Data)
		r.tail.push(tailMsg{id: m.ID, data: m.Data, uid: uid})
		if target := protocol.StoredRecallTarget(m.Data); target != 0 {
			r.recalledInTail(target)
		}
		if m.CID == "" {
			continue
		}
		if at := time.UnixMilli(protocol.StoredTime(m.Data)); now.Sub(at) <= cidWindow {
			r.cids.put(uid, m.CID, m.ID, at)
		}
	}
}

func (r *room) setBroken(err error) {
	if r.broken == nil {
		r.hub.log.Error("room cannot tell what the store holds; posts are refused until it can", "room", r.name, "err", err)
	}
	r.broken = err
	r.retryAt = time.Now().Add(retryBroken)
}

// retryBroken spaces out the room's attempts to read a failing store.
const retryBroken = 200 * time.Millisecond

// armRetry asks the store again after retryBroken while the room is broken:
// messages a failed write left in the store reach the members without
// waiting for the next post.
func (r *room) armRetry(ctx actor.Context) {
	if r.broken == nil || r.retry != nil || r.closing {
		return
	}
	self, root := ctx.Self(), ctx.ActorSystem().Root
	r.retry = time.AfterFunc(time.Until(r.retryAt), func() { root.Send(self, retryTick{}) })
}

// healthy reports whether the room may take posts. A broken room asks the
// store again (at most every retryBroken); messages the store holds beyond
// what the room delivered (a batch that failed after part of it was written)
// are delivered first, so ids stay gap-free for every client.
func (r *room) healthy(ctx actor.Context) bool {
	if r.broken == nil {
		return true
	}
	if len(r.pending) > 0 {
		// Its ids and cids were handed out before the store moved on: the
		// write's own check stores or refuses it before the room reads again.
		r.flush(ctx)
	}
	if time.Now().Before(r.retryAt) {
		return false
	}
	if err := r.cutOff(); err != nil {
		r.setBroken(err)
		return false
	}
	last, err := r.hub.store.LastID(r.name)
	if err != nil {
		r.setBroken(err)
		return false
	}
	if !r.known { // the start could not read it: all of it is history, nothing to deliver
		r.stored, r.known = last, true
	}
	if !r.loaded {
		if err := r.loadTail(r.stored); err != nil {
			r.setBroken(err)
			return false
		}
	}
	if last > r.stored {
		msgs, err := r.hub.store.MessagesAfter(r.name, r.stored, int(last-r.stored))
		if err != nil || len(msgs) == 0 || msgs[len(msgs)-1].ID != last {
			r.setBroken(fmt.Errorf("reading back stored messages: %v", err))
			return false
		}
		r.reacts = nil // the store may hold reactions the room did not see
		r.deliverStored(ctx, msgs)
	}
	r.broken = nil
	r.lastID = r.stored
	r.hub.log.Info("room reads the store again", "room", r.name, "last", r.stored)
	return true
}

// deliverStored fans out messages found in the store that nobody received.
func (r *room) deliverStored(ctx actor.Context, msgs []persistence.Message) {
	batch := make([]pendingMsg, 0, len(msgs))
	for _, m := range msgs {
		if m.ID <= r.stored {
			continue
		}
		pm := pendingMsg{id: m.ID, data: m.Data, uid: uidOf(m.Data)}
		if protocol.StoredEvent(m.Data) {
			pm.effect = &persistence.Effect{} // marks an event, which readers of version 1 never get; what it did is stored already
		}
		if m.CID != "" {
			cid := m.CID
			pm.cid = &cid // relayed with it: the other nodes know it if the room moves to them
			r.echoTo(&pm, cid)
		}
		batch = append(batch, pm)
	}
	if len(batch) == 0 {
		return
	}
	r.stored = batch[len(batch)-1].id
	if r.owns() {
		r.publishBatch(batch, true)
	}
	r.fanout(ctx, batch, true) // events or not: they are few
	r.remember(msgs)
}

func (r *room) join(ctx actor.Context, m *join) {
	r.joins++
	mem := m.Member
	if _, dup := r.index[mem.ID]; dup {
		return
	}
	if r.closing {
		mem.close(protocol.CloseGoingAway, "server shutting down")
		return
	}
	// The first frame is the system frame; replay follows in the same write, and
	// anything stored later is fanned out to this member too: no gap, no duplicate.
	frames := protocol.TextFrame(protocol.System(r.online() + 1))
	if m.HasSince && !r.known {
		mem.close(protocol.CloseInternal, "history unavailable, reconnect with since")
		return
	}
	if m.HasSince {
		var err error
		if frames, err = r.replay(frames, m.Since, mem); err != nil {
			// A silent gap is worse than a reconnect: the client comes back with since.
			r.hub.log.Error("replay read failed; closing the joiner", "room", r.name, "err", err)
			mem.close(protocol.CloseInternal, "history unavailable, reconnect with since")
			return
		}
	}
	if !mem.Sink.Send(frames) {
		r.hub.obs.SlowConsumer()
		mem.close(protocol.CloseSlowConsumer, "slow consumer")
		return // never a member: no presence either way
	}
	r.index[mem.ID] = len(r.members)
	r.members = append(r.members, mem)
	mem.joinedAt, mem.sent, mem.since = r.stored, r.stored, m.HasSince
	// A first join makes the room one of the user's, read up to here; a replay
	// delivered everything up to here.
	r.markRead(ctx, persistence.ReadMark{UID: mem.UID, Room: r.name, ID: r.stored, OnlyNew: !m.HasSince})
	r.cancelIdle()
	// Only now may the conn actor answer its client (error frames): the system
	// frame is already first in the queue.
	ctx.Send(m.PID, &joined{Room: ctx.Self()})
	r.presence(mem, "join")
	r.publishCount("join", mem)
}

// maxReplayBytes bounds one replay so that it always fits a connection's queue;
// a client that needs more pages the rest with /history.
const maxReplayBytes = 4 << 20

// replay appends the stored messages with id > since (the newest ReplayLimit of
// them, and no more than maxReplayBytes: the newest are kept) as mem sees them:
// a member of version 1 gets no events and no recalled messages.
func (r *room) replay(b []byte, since uint64, mem *Member) ([]byte, error) {
	if since >= r.stored {
		return b, nil
	}
	from := since + 1
	if limit := uint64(r.hub.opts.ReplayLimit); r.stored-since > limit {
		from = r.stored - limit + 1
	}
	var msgs []tailMsg
	if tm, ok := r.tail.from(from); ok {
		msgs = tm
	} else {
		stored, err := r.hub.store.MessagesAfter(r.name, from-1, int(r.stored-from+1))
		if err != nil {
			return b, err
		}
		for _, m := range stored {
			if m.ID > r.stored {
				break
			}
			msgs = append(msgs, tailMsg{id: m.ID, data: m.Data, uid: uidOf(m.Data)})
		}
	}
	first, size := len(msgs), 0
	for first > 0 && size+len(msgs[first-1].data)+32 <= maxReplayBytes {
		first--
		size += len(msgs[first].data) + 32
	}
	for _, m := range msgs[first:] {
		if !mem.V2 && (protocol.StoredEvent(m.data) || protocol.StoredRecalled(m.data)) {
			continue
		}
		b = appendFrame(b, m.data, m.uid == mem.UID, nil, mem.Base, mem.V2)
	}
	return b, nil
}

func (r *room) post(ctx actor.Context, p *post) {
	if _, ok := r.index[p.From.ID]; !ok && p.From.relay == nil {
		p.From.done()
		return // dropped (slow consumer) or gone: its socket is closing
	}
	if !r.owns() && p.Msg.Kind != protocol.KindTyping {
		r.forward(ctx, p)
		return
	}
	if p.Msg.Kind > protocol.KindGallery { // version 2: recall, react, typing
		r.event(ctx, p)
		return
	}
	if !r.healthy(ctx) {
		p.From.done()
		r.refuse(p.From, p.Msg.CIDRef(), "room unavailable, message not stored")
		return
	}
	now := r.hub.now()
	var cid *string // points into the post: no copy
	if p.Msg.HasCID {
		cid = &p.Msg.CID
	}
	if cid != nil {
		if id, ok := r.cids.get(p.From.UID, *cid, now); ok {
			r.again(p.From, id, *cid)
			return
		}
	}
	r.lastID++
	rec := protocol.Record{
		ID:        r.lastID,
		Number:    r.online(),
		Time:      now.UnixMilli(),
		UID:       p.From.UID,
		NickName:  p.NickName,
		AvatarURL: p.AvatarURL,
		Kind:      p.Msg.Kind,
		Content:   p.Msg.Content,
		URL:       p.Msg.URL,
	}
	if p.Msg.Ext != nil { // version 2: mentions
		rec.Mentions = p.Msg.Ext.Mentions
		r.split = true
		r.hub.obs.Event(EventMention)
	}
	size := 128 + len(rec.UID) + len(rec.NickName) + len(rec.AvatarURL) + len(rec.Content) + len(rec.URL) + 4*len(rec.Mentions)
	pm := pendingMsg{id: rec.ID, data: protocol.AppendRecord(make([]byte, 0, size+size/8), &rec), uid: p.From.UID, from: p.From, cid: cid}
	r.pending = append(r.pending, pm)
	r.pendingBytes += len(pm.data)
	if cid != nil {
		r.cids.put(p.From.UID, *cid, rec.ID, now)
	}
	if len(r.pending) >= maxBatch || r.pendingBytes >= maxBatchBytes {
		r.flush(ctx) // a full batch goes now: one flush never holds more
		return
	}
	if !r.flushing {
		r.flushing = true
		r.scheduleFlush(ctx)
	}
}

// again answers a re-sent cid with the echo of its original message, which
// is stored already or pending in this batch; nothing new is stored.
func (r *room) again(to *Member, id uint64, cid string) {
	if id > r.stored {
		r.dups = append(r.dups, dupEcho{to: to, id: id, cid: cid})
		return
	}
	if to.relay != nil { // its node echoes it, behind what that node has delivered (forwarded)
		to.relay.id, to.relay.again = id, true
		to.done()
		return
	}
	defer to.done()
	data, ok := r.storedData(id)
	if !ok {
		r.refuse(to, &cid, "message stored, but its echo cannot be read now")
		return
	}
	var frame []byte
	if !to.V2 && (protocol.StoredEvent(data) || protocol.StoredRecalled(data)) {
		// Version 1 never sees events or recalled messages: the cid was a
		// reaction or recall of another device of the user's, or its message is recalled.
		frame = protocol.TextFrame(protocol.ErrorFrame(protocol.ErrBadMessage, "this cid's message was recalled, or the cid is an event's", &cid))
	} else {
		frame = appendFrame(nil, data, true, &cid, to.Base, to.V2)
	}
	if !to.Sink.Send(frame) {
		to.close(protocol.CloseSlowConsumer, "slow consumer")
	}
}

func (r *room) storedData(id uint64) ([]byte, bool) {
	if m, ok := r.tail.get(id); ok {
		return m.data, true
	}
	msgs, err := r.hub.store.MessagesAfter(r.name, id-1, 1)
	if err != nil || len(msgs) == 0 || msgs[0].ID != id {
		return nil, false
	}
	return msgs[0].Data, true
}

// scheduleFlush flushes at once in a quiet room (the flush message queues behind
// the posts already in the mailbox), and in a busy one at most once per window:
// a batch of k messages costs each member one write instead of k. The window
// grows with the room (a socket write costs microseconds, so a big room's
// writes per second are what to bound), up to FlushWindow.
func (r *room) scheduleFlush(ctx actor.Context) {
	window := min(time.Duration(len(r.members))*flushPerMember, r.hub.opts.FlushWindow)
	wait := window - time.Since(r.lastFlush)
	if wait <= 0 {
		ctx.Send(ctx.Self(), flush{})
		return
	}
	self, root := ctx.Self(), ctx.ActorSystem().Root
	time.AfterFunc(wait, func() { root.Send(self, flush{}) })
}

// flushPerMember is the window each member adds: 1 000 members → 15 ms.
const flushPerMember = 15 * time.Microsecond

// flush stores the pending batch in one transaction, then fans it out.
func (r *room) flush(ctx actor.Context) {
	r.flushing = false
	r.lastFlush = time.Now()
	if len(r.pending) == 0 {
		return
	}
	batch := r.pending
	r.pending, r.spare = r.spare[:0], batch
	r.pendingBytes = 0
	split := r.split
	r.split = false
	r.batch = r.batch[:0]
	for _, pm := range batch {
		m := persistence.Message{ID: pm.id, Data: pm.data, Effect: pm.effect}
		if pm.cid != nil {
			m.CID = *pm.cid
		}
		r.batch = append(r.batch, m)
	}
	start := time.Now()
	err := r.hub.store.AppendMessages(r.name, r.batch)
	r.hub.obs.StoreWrite(time.Since(start), err)
	stored := batch
	if err != nil {
		stored = r.storedPart(batch, err)
	}
	if len(stored) > 0 {
		r.stored = stored[len(stored)-1].id
		r.publishBatch(stored, split)
		start = time.Now()
		deliveries := r.fanout(ctx, stored, split)
		r.hub.obs.Broadcast(len(stored), deliveries, time.Since(start))
		for _, pm := range stored {
			r.tail.push(tailMsg{id: pm.id, data: pm.data, uid: pm.uid})
		}
		if split {
			r.applyStored(stored)
		}
	}
	if err != nil || len(r.reacts) > maxReactCache {
		r.reacts = nil // read again from the store: nothing pending depends on it now
	}
	for _, pm := range batch {
		if pm.from != nil && pm.from.relay != nil && pm.id <= r.stored {
			pm.from.relay.id = pm.id
		}
		pm.from.done()
	}
	r.answerDups()
	clear(batch) // drop references held by the spare buffer
	r.maybeTrim(ctx)
}

// storedPart settles a batch the store refused: the part the store holds
// anyway (a batch split over transactions, or rows made visible before a
// failed fsync) is delivered like any other; the rest is refused, its ids are
// handed out again and its cids forgotten, so a re-send stores it.
func (r *room) storedPart(batch []pendingMsg, err error) []pendingMsg {
	var (
		last uint64
		lerr = r.cutOff()
	)
	if lerr == nil {
		last, lerr = r.hub.store.LastID(r.name)
	}
	if errors.Is(err, persistence.ErrConflict) && lerr == nil {
		// Another writer took these ids (several nodes): nothing of ours was
		// stored. Read back and deliver what it stored before any new post.
		lerr = err
	}
	if lerr != nil {
		// Unknown: deliver nothing; once the store answers again, whatever it
		// holds is delivered before any new post (healthy).
		r.setBroken(lerr)
		last = r.stored
	}
	n := 0
	for n < len(batch) && batch[n].id <= last {
		n++
	}
	if n > 0 && r.clustered() { // another node may hold these ids: deliver only what is ours
		k, verr := r.ours(batch[:n])
		if verr != nil {
			lerr = verr
		} else if k < n {
			lerr = fmt.Errorf("another writer stored ids from %d: %w", batch[k].id, persistence.ErrConflict)
		}
		if lerr != nil {
			r.setBroken(lerr)
			n = k
		}
	}
	if n == len(batch) && last > batch[n-1].id { // more than we wrote: read it back before going on
		r.setBroken(fmt.Errorf("store holds ids up to %d beyond the batch", last))
	}
	rest := batch[n:]
	if len(rest) > 0 {
		r.hub.log.Error("storing messages failed; senders told, nothing of it delivered", "room", r.name, "count", len(rest), "err", err)
	}
	for _, pm := range rest {
		if pm.cid != nil {
			r.cids.forget(pm.uid, *pm.cid, pm.id)
		}
		switch {
		case errors.Is(lerr, persistence.ErrConflict):
			r.refuse(pm.from, pm.cid, "message not stored: another node took its id; send it again")
		case lerr != nil:
			r.refuse(pm.from, pm.cid, "message not confirmed: the server cannot read its store right now")
		default:
			r.refuse(pm.from, pm.cid, "message not stored: the server cannot write right now")
		}
	}
	r.lastID = max(last, r.stored)
	return batch[:n]
}

// ours reads back the ids of batch the store says it holds and tells how
// many of them, from the first, are this room's own messages.
func (r *room) ours(batch []pendingMsg) (int, error) {
	msgs, err := r.hub.store.MessagesAfter(r.name, batch[0].id-1, len(batch))
	if err != nil {
		return 0, fmt.Errorf("reading back what was stored: %w", err)
	}
	k := 0
	for k < len(batch) && k < len(msgs) && msgs[k].ID == batch[k].id && bytes.Equal(msgs[k].Data, batch[k].data) {
		k++
	}
	return k, nil
}

func (r *room) answerDups() {
	for _, d := range r.dups {
		if d.id <= r.stored {
			r.again(d.to, d.id, d.cid)
			continue
		}
		d.to.done()
		r.refuse(d.to, &d.cid, "message not stored: the server cannot write right now")
	}
	clear(r.dups)
	r.dups = r.dups[:0]
}

// fanout sends a stored batch to every member. Each message's frame exists
// once per variant and base URL (usually one base), and the members' queues
// share them: others' messages as "remote", a user's own messages as "user"
// (shared by all of that user's connections); only the sending connection's
// frames with its cid are encoded for it alone. A split batch (events or
// mentions in it) has these variants twice: as members of version 2 see it,
// and as those of version 1 do (no events, no mentions); any other batch is
// the same for both.
func (r *room) fanout(ctx actor.Context, batch []pendingMsg, split bool) int {
	f := &r.fan
	f.reset()
	f.split = split
	var slow []*Member
	for _, m := range r.members {
		v2 := split && m.V2
		e := f.variant(batch, "", m.Base, v2)
		segs := &f.segs
		segs.reset()
		if !sentIn(batch, m.UID) {
			segs.add(srcRemote, e.buf, 0, len(e.buf))
		} else {
			u := f.variant(batch, m.UID, m.Base, v2)
			for i := range batch {
				pm := &batch[i]
				switch {
				case pm.uid != m.UID:
					segs.add(srcRemote, e.buf, e.start(i), e.ends[i])
				case pm.effect != nil: // an own event: as everyone sees it, with the cid on its connection
					if pm.from == m && pm.cid != nil {
						segs.private(appendFrame(nil, pm.data, true, pm.cid, m.Base, true))
					} else {
						segs.add(srcRemote, e.buf, e.start(i), e.ends[i])
					}
				case pm.from == m && pm.cid != nil:
					segs.private(appendFrame(nil, pm.data, true, pm.cid, m.Base, v2))
				default:
					segs.add(srcUser, u.buf, u.start(i), u.ends[i])
				}
			}
		}
		if out := segs.done(); len(out) > 0 && !m.Sink.Send(out...) {
			slow = append(slow, m)
		} else if !m.gone.Load() {
			m.sent = r.stored
		}
	}
	f.reset() // the queues hold the buffers now; let go of them here
	for _, m := range slow {
		r.remove(ctx, m, "slow")
	}
	return len(batch) * (len(r.members) + len(slow))
}

// fanScratch is kept from one fan-out to the next; only the frame buffers,
// which the members' queues hold on to, are new each time.
type fanScratch struct {
	encs  []*encoded // variants built in this fan-out
	n     int
	segs  segments
	split bool // the batch has versions: events and mentions only in v2 variants
}

func (f *fanScratch) reset() {
	for _, e := range f.encs[:f.n] {
		e.buf = nil
	}
	f.n = 0
	clear(f.segs.out)
	f.segs.out = f.segs.out[:0]
}

// variant is the batch's frames as uid sees them ("" : as others see them,
// remote), made absolute with base, as members of version 2 (v2) or 1 see
// them; built on first use.
func (f *fanScratch) variant(batch []pendingMsg, uid, base string, v2 bool) *encoded {
	for _, e := range f.encs[:f.n] {
		if e.uid == uid && e.base == base && e.v2 == v2 {
			return e
		}
	}
	if f.n == len(f.encs) {
		f.encs = append(f.encs, &encoded{})
	}
	e := f.encs[f.n]
	f.n++
	e.uid, e.base, e.v2 = uid, base, v2
	if f.split {
		e.encodeSplit(batch)
	} else {
		e.encode(batch)
	}
	return e
}

// encoded is a batch's frames of one variant, back to back; a message not in
// the variant takes no bytes.
type encoded struct {
	uid, base string
	v2        bool
	buf       []byte
	ends      []int // end of message i's frame in buf
}

func (e *encoded) start(i int) int {
	if i == 0 {
		return 0
	}
	return e.ends[i-1]
}

// encode builds the variant in one buffer of the size it needs.
func (e *encoded) encode(batch []pendingMsg) {
	size := 0
	for i := range batch {
		if e.uid == "" || batch[i].uid == e.uid {
			size += len(batch[i].data) + 32 + 2*len(e.base)
		}
	}
	e.buf = make([]byte, 0, size)
	e.ends = e.ends[:0]
	for i := range batch {
		if e.uid == "" || batch[i].uid == e.uid {
			e.buf = appendChatFrame(e.buf, batch[i].data, e.uid != "", nil, e.base)
		}
		e.ends = append(e.ends, len(e.buf))
	}
}

// encodeSplit is encode for a batch with events or mentions: events are in the
// others' variant of version 2 only, mentions in version 2 only.
func (e *encoded) encodeSplit(batch []pendingMsg) {
	size := 0
	for i := range batch {
		size += len(batch[i].data) + 32 + 2*len(e.base)
	}
	e.buf = make([]byte, 0, size)
	e.ends = e.ends[:0]
	for i := range batch {
		pm := &batch[i]
		in := e.uid == "" || pm.uid == e.uid
		if pm.effect != nil {
			in = e.uid == "" && e.v2
		} else if !e.v2 && protocol.StoredRecalled(pm.data) { // read back from the store: version 1 never sees it
			in = false
		}
		if in {
			e.buf = appendFrame(e.buf, pm.data, e.uid != "", nil, e.base, e.v2)
		}
		e.ends = append(e.ends, len(e.buf))
	}
}

// segments collects what one member is sent: slices of the shared buffers,
// joined where they follow on, and its private frames, joined into one.
type segments struct {
	out    [][]byte
	src    int
	buf    []byte
	lo, hi int
	priv   []byte
}

const (
	srcNone = iota
	srcRemote
	srcUser
	srcPrivate
)

func (s *segments) reset() { s.out, s.src = s.out[:0], srcNone }

func (s *segments) add(src int, buf []byte, lo, hi int) {
	if s.src == src && s.hi == lo {
		s.hi = hi
		return
	}
	s.flush()
	s.src, s.buf, s.lo, s.hi = src, buf, lo, hi
}

func (s *segments) private(frame []byte) {
	if s.src != srcPrivate {
		s.flush()
		s.src, s.priv = srcPrivate, nil
	}
	s.priv = append(s.priv, frame...)
}

func (s *segments) flush() {
	switch s.src {
	case srcRemote, srcUser:
		if s.hi > s.lo {
			s.out = append(s.out, s.buf[s.lo:s.hi])
		}
	case srcPrivate:
		s.out = append(s.out, s.priv)
	}
	s.src = srcNone
}

func (s *segments) done() [][]byte {
	s.flush()
	return s.out
}

func sentIn(batch []pendingMsg, uid string) bool {
	for i := range batch {
		if batch[i].uid == uid {
			return true
		}
	}
	return false
}

// waitsOnPending reports whether m posted, or re-sent, a message of the pending batch.
func (r *room) waitsOnPending(m *Member) bool {
	for _, pm := range r.pending {
		if pm.from == m {
			return true
		}
	}
	for _, d := range r.dups {
		if d.to == m {
			return true
		}
	}
	return false
}

// kick closes a member behind what the room owes it: its pending messages are
// stored and their echoes queued, then the frame and the close.
func (r *room) kick(ctx actor.Context, k *kick) {
	i, ok := r.index[k.ID]
	if !ok {
		return
	}
	m := r.members[i]
	if r.waitsOnPending(m) {
		r.flush(ctx) // its echoes and errors go out before the close
	}
	if _, still := r.index[k.ID]; !still { // dropped as slow during the flush
		return
	}
	m.close(k.Code, k.Reason, textFrames(k.Frame)...)
	r.remove(ctx, m, "")
}

// remove drops a member. why "slow" closes it with 1013; "" means it is already gone.
func (r *room) remove(ctx actor.Context, m *Member, why string) {
	i, ok := r.index[m.ID]
	if !ok {
		return
	}
	if why != "slow" && !m.dropped.Load() && (m.since || m.sent > m.joinedAt) { // a slow one's queue, unread, is dropped
		r.markRead(ctx, persistence.ReadMark{UID: m.UID, Room: r.name, ID: m.sent})
	}
	last := len(r.members) - 1
	r.members[i] = r.members[last]
	r.index[r.members[i].ID] = i
	r.members[last] = nil
	r.members = r.members[:last]
	delete(r.index, m.ID)
	for k, a := range r.awaiting {
		if a == m {
			delete(r.awaiting, k)
		}
	}
	if why == "slow" {
		r.hub.obs.SlowConsumer()
		m.close(protocol.CloseSlowConsumer, "slow consumer")
	}
	r.presence(m, "leave")
	r.publishCount("leave", m)
	if len(r.members) == 0 {
		r.armIdle(ctx)
	}
}

// armPing schedules the next ping tick in d; the timer is only touched by the room.
func (r *room) armPing(ctx actor.Context, d time.Duration) {
	self, root := ctx.Self(), ctx.ActorSystem().Root
	r.pinger = time.AfterFunc(d, func() { root.Send(self, pingTick{}) })
}

// ping sends every member a ping frame; a member whose queue is full is slow.
func (r *room) ping(ctx actor.Context) {
	var slow []*Member
	for _, m := range r.members {
		if !m.Sink.Send(protocol.PingFrame) {
			slow = append(slow, m)
		}
	}
	for _, m := range slow {
		r.remove(ctx, m, "slow")
	}
}

// presence tells members who asked for it that the online count changed.
func (r *room) presence(who *Member, event string) {
	r.presenceOf(who, event, who.UID, who.NickName)
}

// presenceOf is presence for a member of this node (who) or of another (nil).
func (r *room) presenceOf(who *Member, event, uid, nick string) {
	var frame []byte
	for _, m := range r.members {
		if !m.Presence || m == who { // the joiner learns the count from its system frame
			continue
		}
		if frame == nil {
			frame = protocol.TextFrame(protocol.Presence(r.online(), event, uid, nick))
		}
		m.Sink.Send(frame) // a full queue shows up at the next broadcast
	}
}

func (r *room) refuse(m *Member, cid *string, why string) {
	m.Sink.Send(protocol.TextFrame(protocol.ErrorFrame(protocol.ErrUnavailable, why, cid)))
}

func (r *room) idle(ctx actor.Context) {
	if len(r.members) > 0 || r.flushing || r.trimming {
		if len(r.members) == 0 {
			r.armIdle(ctx)
		}
		return
	}
	ctx.Send(ctx.Parent(), &roomIdle{Name: r.name, Joins: r.joins})
	r.armIdle(ctx) // ask again if the registry said no
}

// maybeTrim deletes history beyond the retention limit in the background.
func (r *room) maybeTrim(ctx actor.Context) {
	keep := uint64(r.hub.opts.Retention)
	if r.hub.opts.Retention <= 0 || r.trimming || r.stored <= keep {
		return
	}
	keepFrom := r.stored - keep + 1
	if keepFrom-r.trimmedTo < keep/10+1 { // trim in steps, not per message
		return
	}
	r.trimming, r.trimmedTo = true, keepFrom
	self, store, name, log := ctx.Self(), r.hub.store, r.name, r.hub.log
	root := ctx.ActorSystem().Root
	go func() {
		defer root.Send(self, trimmed{})
		defer func() {
			if p := recover(); p != nil {
				log.Error("history trim failed", "room", name, "panic", p, "stack", string(debug.Stack()))
			}
		}()
		if _, err := store.TrimMessages(name, keepFrom); err != nil {
			log.Warn("history trim failed", "room", name, "err", err)
		}
	}()
}

// close is the shutdown path: store what is pending, say 1001 to everyone, stop.
func (r *room) close(ctx actor.Context) {
	r.flush(ctx)
	for _, m := range r.members {
		if !m.dropped.Load() && (m.since || m.sent > m.joinedAt) {
			r.reads = append(r.reads, persistence.ReadMark{UID: m.UID, Room: r.name, ID: m.sent})
		}
		m.close(protocol.CloseGoingAway, "server shutting down")
	}
	r.writeReads()
	ctx.Stop(ctx.Self())
}

// appendChatFrame appends one complete text frame for a stored message.
func appendChatFrame(b, stored []byte, own bool, cid *string, base string) []byte {
	b, start := protocol.BeginFrame(b)
	b = protocol.AppendChat(b, stored, own, cid, base)
	return protocol.EndFrame(b, start)
}

// appendFrame appends one complete text frame for a stored object, as a
// member of version 2 (v2) or 1 sees it.
func appendFrame(b, stored []byte, own bool, cid *string, base string, v2 bool) []byte {
	b, start := protocol.BeginFrame(b)
	b = protocol.AppendFrameOf(b, stored, own, cid, base, v2)
	return protocol.EndFrame(b, start)
}

func uidOf(stored []byte) string { return protocol.StoredUID(stored) }

// idleTick is the room's own idle timer (protoactor's receive timeout races
// with its timer goroutine); a tick of an older generation is ignored.
type idleTick struct{ gen uint64 }

// armIdle starts the idle period anew.
func (r *room) armIdle(ctx actor.Context) {
	r.cancelIdle()
	gen, self, root := r.idleGen, ctx.Self(), ctx.ActorSystem().Root
	r.idleTimer = time.AfterFunc(r.hub.opts.IdleRoom, func() { root.Send(self, idleTick{gen}) })
}

func (r *room) cancelIdle() {
	r.idleGen++
	if r.idleTimer != nil {
		r.idleTimer.Stop()
	}
}
