package actors

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/pandachat/pandachat/persistence"
	"github.com/pandachat/pandachat/protocol"
)

// room is the one owner of a room's state: it alone assigns ids, keeps the
// online count, stores each batch and then fans it out.
type room struct {
	name   string
	hub    *Hub
	lastID uint64 // highest id assigned
	stored uint64 // highest id in the store; everything ≤ stored may be delivered
	broken error  // the store could not tell the last id: refuse posts rather than reuse ids

	members []*Member
	index   map[string]int // Member.ID → position in members
	joins   uint64         // joins handled, to agree with the registry on idleness

	pending   []pendingMsg
	spare     []pendingMsg // the other half of the double buffer
	batch     []persistence.Message
	flushing  bool
	lastFlush time.Time
	tail      tail

	pinger    *time.Timer
	trimming  bool
	trimmedTo uint64 // ids below this are gone from the store
	closing   bool
}

type pendingMsg struct {
	id   uint64
	data []byte // stored JSON object
	from *Member
	cid  *string
}

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
	case *join:
		r.join(ctx, m)
	case *post:
		r.post(ctx, m)
	case flush:
		r.flush(ctx)
	case *leave:
		if i, ok := r.index[m.ID]; ok {
			r.remove(ctx, r.members[i], "")
		}
	case *actor.ReceiveTimeout:
		r.idle(ctx)
	case trimmed:
		r.trimming = false
		r.maybeTrim(ctx) // catch up with what was stored meanwhile
	case pingTick:
		r.ping(ctx)
		r.armPing(ctx)
	case closeRoom:
		r.close(ctx)
	case *actor.Stopped:
		r.pinger.Stop()
		r.hub.obs.RoomStopped()
	}
}

func (r *room) start(ctx actor.Context) {
	r.hub.obs.RoomStarted()
	last, err := r.hub.store.LastID(r.name)
	if err != nil {
		r.broken = err
		r.hub.log.Error("room cannot read its last id; posts are refused", "room", r.name, "err", err)
	}
	r.lastID, r.stored = last, last
	ctx.SetReceiveTimeout(r.hub.opts.IdleRoom)
	r.armPing(ctx)
}

func (r *room) join(ctx actor.Context, m *join) {
	r.joins++
	mem := m.Member
	if _, dup := r.index[mem.ID]; dup {
		return
	}
	if r.closing {
		mem.Sink.Close(protocol.CloseGoingAway, "server shutting down")
		return
	}
	r.index[mem.ID] = len(r.members)
	r.members = append(r.members, mem)
	ctx.CancelReceiveTimeout()

	// The first frame is the system frame; replay follows in the same write, and
	// anything stored later is fanned out to this member too: no gap, no duplicate.
	frames := protocol.TextFrame(protocol.System(len(r.members)))
	if m.HasSince {
		frames = r.replay(frames, m.Since, mem.UID, mem.Base)
	}
	if !mem.Sink.Send(frames) {
		r.remove(ctx, mem, "slow")
		return
	}
	// Only now may the conn actor answer its client (error frames): the system
	// frame is already first in the queue.
	ctx.Send(m.PID, &joined{Room: ctx.Self()})
	r.presence(mem, "join")
}

// maxReplayBytes bounds one replay so that it always fits a connection's queue;
// a client that needs more pages the rest with /history.
const maxReplayBytes = 4 << 20

// replay appends the stored messages with id > since (the newest ReplayLimit of
// them, and no more than maxReplayBytes: the newest are kept).
func (r *room) replay(b []byte, since uint64, uid, base string) []byte {
	if since >= r.stored {
		return b
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
			r.hub.log.Error("replay read failed", "room", r.name, "err", err)
			return b
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
		b = appendChatFrame(b, m.data, m.uid == uid, nil, base)
	}
	return b
}

func (r *room) post(ctx actor.Context, p *post) {
	if _, ok := r.index[p.From.ID]; !ok {
		return // dropped (slow consumer) or gone: its socket is closing
	}
	if r.broken != nil || r.closing {
		r.refuse(p.From, p.Msg.CIDRef(), "room unavailable, message not stored")
		return
	}
	r.lastID++
	rec := protocol.Record{
		ID:        r.lastID,
		Number:    len(r.members),
		Time:      r.hub.now().UnixMilli(),
		UID:       p.From.UID,
		NickName:  p.NickName,
		AvatarURL: p.AvatarURL,
		Kind:      p.Msg.Kind,
		Content:   p.Msg.Content,
		URL:       p.Msg.URL,
	}
	pm := pendingMsg{id: rec.ID, data: protocol.AppendRecord(nil, &rec), from: p.From, cid: p.Msg.CIDRef()}
	r.pending = append(r.pending, pm)
	if !r.flushing {
		r.flushing = true
		r.scheduleFlush(ctx)
	}
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
	r.batch = r.batch[:0]
	for _, pm := range batch {
		r.batch = append(r.batch, persistence.Message{ID: pm.id, Data: pm.data})
	}
	start := time.Now()
	err := r.hub.store.AppendMessages(r.name, r.batch)
	r.hub.obs.StoreWrite(time.Since(start), err)
	if err != nil {
		// Nobody has seen these ids: hand them out again rather than leave a hole
		// (unless part of a very large batch was committed: never reuse those).
		if last, lerr := r.hub.store.LastID(r.name); lerr == nil && last > r.stored {
			r.stored = last
		}
		r.lastID = r.stored
		r.hub.log.Error("storing messages failed; senders told, nothing delivered", "room", r.name, "count", len(batch), "err", err)
		for _, pm := range batch {
			r.refuse(pm.from, pm.cid, "message not stored: the server cannot write right now")
		}
		clear(batch)
		return
	}
	r.stored = batch[len(batch)-1].id
	start = time.Now()
	deliveries := r.fanout(ctx, batch)
	r.hub.obs.Broadcast(len(batch), deliveries, time.Since(start))
	for _, pm := range batch {
		r.tail.push(tailMsg{id: pm.id, data: pm.data, uid: pm.from.UID})
	}
	clear(batch) // drop references held by the spare buffer
	r.maybeTrim(ctx)
}

// fanout sends a stored batch to every member. Frames are encoded once per
// variant and per base URL members see the server at (usually one); members
// who sent nothing in the batch share one buffer of all of it.
func (r *room) fanout(ctx actor.Context, batch []pendingMsg) int {
	remote := map[string][]byte{}
	var slow []*Member
	for _, m := range r.members {
		var frames []byte
		if sentIn(batch, m.UID) {
			for _, pm := range batch {
				var cid *string
				if pm.from == m {
					cid = pm.cid
				}
				frames = appendChatFrame(frames, pm.data, pm.from.UID == m.UID, cid, m.Base)
			}
		} else {
			var ok bool
			if frames, ok = remote[m.Base]; !ok {
				for _, pm := range batch {
					frames = appendChatFrame(frames, pm.data, false, nil, m.Base)
				}
				remote[m.Base] = frames
			}
		}
		if !m.Sink.Send(frames) {
			slow = append(slow, m)
		}
	}
	for _, m := range slow {
		r.remove(ctx, m, "slow")
	}
	return len(batch) * (len(r.members) + len(slow))
}

func sentIn(batch []pendingMsg, uid string) bool {
	for i := range batch {
		if batch[i].from.UID == uid {
			return true
		}
	}
	return false
}

// remove drops a member. why "slow" closes it with 1013; "" means it is already gone.
func (r *room) remove(ctx actor.Context, m *Member, why string) {
	i, ok := r.index[m.ID]
	if !ok {
		return
	}
	last := len(r.members) - 1
	r.members[i] = r.members[last]
	r.index[r.members[i].ID] = i
	r.members[last] = nil
	r.members = r.members[:last]
	delete(r.index, m.ID)
	if why == "slow" {
		r.hub.obs.SlowConsumer()
		m.Sink.Close(protocol.CloseSlowConsumer, "slow consumer")
	}
	r.presence(m, "leave")
	if len(r.members) == 0 {
		ctx.SetReceiveTimeout(r.hub.opts.IdleRoom)
	}
}

// armPing schedules the next ping tick; the timer is only touched by the room.
func (r *room) armPing(ctx actor.Context) {
	self, root := ctx.Self(), ctx.ActorSystem().Root
	r.pinger = time.AfterFunc(r.hub.opts.PingInterval, func() { root.Send(self, pingTick{}) })
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
	var frame []byte
	for _, m := range r.members {
		if !m.Presence || m == who { // the joiner learns the count from its system frame
			continue
		}
		if frame == nil {
			frame = protocol.TextFrame(protocol.Presence(len(r.members), event, who.UID, who.NickName))
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
			ctx.SetReceiveTimeout(r.hub.opts.IdleRoom)
		}
		return
	}
	ctx.Send(ctx.Parent(), &roomIdle{Name: r.name, Joins: r.joins})
	ctx.SetReceiveTimeout(r.hub.opts.IdleRoom) // ask again if the registry said no
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
		if _, err := store.TrimMessages(name, keepFrom); err != nil {
			log.Warn("history trim failed", "room", name, "err", err)
		}
		root.Send(self, trimmed{})
	}()
}

// close is the shutdown path: store what is pending, say 1001 to everyone, stop.
func (r *room) close(ctx actor.Context) {
	r.flush(ctx)
	r.closing = true
	for _, m := range r.members {
		m.Sink.Close(protocol.CloseGoingAway, "server shutting down")
	}
	ctx.Stop(ctx.Self())
}

// appendChatFrame appends one complete text frame for a stored message.
func appendChatFrame(b, stored []byte, own bool, cid *string, base string) []byte {
	b, start := protocol.BeginFrame(b)
	b = protocol.AppendChat(b, stored, own, cid, base)
	return protocol.EndFrame(b, start)
}

func uidOf(stored []byte) string { return protocol.StoredUID(stored) }
