package actors

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/pandachat/pandachat/persistence"
	"github.com/pandachat/pandachat/protocol"
)

// What a room does beyond chat messages (protocol version 2): recalls and
// reactions, which are events with ids of the room's sequence, stored and
// fanned out with the messages; typing notices, which are neither; and the
// read positions of its members.

// Event kinds, as the Observer is told of them.
const (
	EventRecall   = "recall"
	EventReaction = "reaction"
	EventTyping   = "typing"
	EventMention  = "mention" // a message that mentions someone
)

// Limits of the events.
const (
	typingEvery     = 3 * time.Second // one typing notice per user per room at most this often
	maxTypingRoom   = 100             // rooms with more members get none
	maxEmojiPerMsg  = 20              // different emoji on one message
	maxReactCache   = 256             // messages whose reactions a room keeps between batches
	maxTypingMemory = 1024            // users a room remembers the last typing notice of
)

// writeReads is the room's self-sent "write the read positions now"; it queues
// behind the joins and leaves already in the mailbox, so a burst is one write.
type writeReads struct{}

// event handles a frame of version 2 that is not a chat message.
func (r *room) event(ctx actor.Context, p *post) {
	if p.Msg.Kind == protocol.KindTyping {
		if r.typing(p) {
			r.publish(relayMsg{T: relayTyping, UID: p.From.UID, Nick: p.NickName})
		}
		p.From.done()
		return
	}
	if !r.healthy(ctx) {
		p.From.done()
		r.refuse(p.From, p.Msg.CIDRef(), "room unavailable, not stored")
		return
	}
	now := r.hub.now()
	var cid *string
	if p.Msg.HasCID {
		cid = &p.Msg.CID
		if id, ok := r.cids.get(p.From.UID, *cid, now); ok {
			r.again(p.From, id, *cid)
			return
		}
	}
	if !r.hub.store.SupportsEvents() {
		p.From.done()
		r.notAllowed(p.From, cid, "recalls and reactions are not available with this store")
		return
	}
	target, data, why := r.target(p.Msg.Target())
	if why != "" {
		p.From.done()
		if data == nil && why == errTargetUnreadable {
			r.refuse(p.From, cid, why)
		} else {
			r.notAllowed(p.From, cid, why)
		}
		return
	}
	ev := protocol.Event{ID: r.lastID + 1, Time: now.UnixMilli(), Target: target, UID: p.From.UID, NickName: p.NickName}
	var eff *persistence.Effect
	if p.Msg.Kind == protocol.KindRecall {
		if eff, why = r.recall(target, data, p.From.UID, now); why != "" {
			p.From.done()
			r.notAllowed(p.From, cid, why)
			return
		}
		delete(r.reacts, target) // its reactions go with it
		r.hub.obs.Event(EventRecall)
	} else {
		st, err := r.reactions(target, p.From.UID)
		if err != nil {
			p.From.done()
			r.hub.log.Warn("reactions could not be read", "room", r.name, "err", err)
			r.refuse(p.From, cid, "reactions unavailable right now, not stored")
			return
		}
		if ev.On, why = st.toggle(p.From.UID, p.Msg.Emoji()); why != "" {
			p.From.done()
			r.notAllowed(p.From, cid, why)
			return
		}
		ev.Emoji = p.Msg.Emoji()
		eff = st.effect(target, p.From.UID)
		r.hub.obs.Event(EventReaction)
	}
	r.lastID++
	pm := pendingMsg{id: ev.ID, data: protocol.AppendEvent(nil, &ev), uid: p.From.UID, from: p.From, cid: cid, effect: eff}
	r.pending = append(r.pending, pm)
	r.pendingBytes += len(pm.data)
	r.split = true
	if cid != nil {
		r.cids.put(p.From.UID, *cid, ev.ID, now)
	}
	if len(r.pending) >= maxBatch || r.pendingBytes >= maxBatchBytes {
		r.flush(ctx)
		return
	}
	if !r.flushing {
		r.flushing = true
		r.scheduleFlush(ctx)
	}
}

const errTargetUnreadable = "the message cannot be read right now"

// target finds the stored object of message id: its data, or why it cannot be
// the target of an event (a nil data with errTargetUnreadable: the store failed).
func (r *room) target(id uint64) (uint64, []byte, string) {
	none := "no message " + strconv.FormatUint(id, 10) + " in this room"
	if id > r.stored || id < r.trimmedTo {
		return id, nil, none
	}
	data, ok := []byte(nil), false
	if m, in := r.tail.get(id); in {
		data, ok = m.data, true
	} else {
		msgs, err := r.hub.store.MessagesAfter(r.name, id-1, 1)
		if err != nil {
			r.hub.log.Warn("event target could not be read", "room", r.name, "err", err)
			return id, nil, errTargetUnreadable
		}
		if len(msgs) == 1 && msgs[0].ID == id {
			data, ok = msgs[0].Data, true
		}
	}
	if !ok || protocol.StoredEvent(data) {
		return id, nil, none
	}
	if protocol.StoredRecalled(data) || r.recallPending(id) {
		return id, data, "message " + strconv.FormatUint(id, 10) + " was recalled"
	}
	return id, data, ""
}

func (r *room) recallPending(id uint64) bool {
	for i := range r.pending {
		if e := r.pending[i].effect; e != nil && e.Target == id && e.Recall != nil {
			return true
		}
	}
	return false
}

// recall checks that uid may recall the message data and makes the effect.
func (r *room) recall(target uint64, data []byte, uid string, now time.Time) (*persistence.Effect, string) {
	if protocol.StoredUID(data) != uid {
		return nil, "only its sender may recall a message"
	}
	window := r.hub.opts.RecallWindow
	if now.Sub(time.UnixMilli(protocol.StoredTime(data))) > window {
		return nil, fmt.Sprintf("a message can be recalled within %s of sending it", window)
	}
	stub, ok := protocol.RecallStub(data)
	if !ok {
		return nil, "this message cannot be recalled"
	}
	return &persistence.Effect{Target: target, Recall: stub}, ""
}

// applyStored brings the tail up to a stored batch's recalls.
func (r *room) applyStored(stored []pendingMsg) {
	for i := range stored {
		switch e := stored[i].effect; {
		case e == nil:
		case e.Recall != nil:
			r.tail.set(e.Target, e.Recall)
		default: // read back from the store by its owner: no stub came with it
			if target := protocol.StoredRecallTarget(stored[i].data); target != 0 {
				r.recalledInTail(target)
			}
		}
	}
}

// recalledInTail turns the tail's copy of a recalled message into its stub
// (for events read back from the store).
func (r *room) recalledInTail(id uint64) {
	if m, ok := r.tail.get(id); ok {
		if stub, ok := protocol.RecallStub(m.data); ok {
			r.tail.set(id, stub)
		}
	}
}

func (r *room) notAllowed(m *Member, cid *string, why string) {
	m.Sink.Send(protocol.TextFrame(protocol.ErrorFrame(protocol.ErrNotAllowed, why, cid)))
}

// typing sends the sender's typing notice to the other members of version 2,
// at most once per typingEvery per user, and never in a room above
// maxTypingRoom members. Nothing is stored; a full queue shows at the next batch.
func (r *room) typing(p *post) bool {
	if r.online() > maxTypingRoom {
		return false
	}
	now := r.hub.now()
	if last, ok := r.typingAt[p.From.UID]; ok && now.Sub(last) < typingEvery {
		return false
	}
	if r.typingAt == nil {
		r.typingAt = map[string]time.Time{}
	}
	if len(r.typingAt) >= maxTypingMemory {
		for uid, at := range r.typingAt {
			if now.Sub(at) >= typingEvery {
				delete(r.typingAt, uid)
			}
		}
	}
	r.typingAt[p.From.UID] = now
	r.hub.obs.Event(EventTyping)
	r.sendTyping(p.From.UID, p.NickName)
	return true
}

// sendTyping gives uid's typing notice to this node's other members of version 2.
func (r *room) sendTyping(uid, nick string) {
	var frame []byte
	for _, m := range r.members {
		if !m.V2 || m.UID == uid {
			continue
		}
		if frame == nil {
			frame = protocol.TextFrame(protocol.Typing(uid, nick))
		}
		m.Sink.Send(frame)
	}
}

// reactState is what a room knows of one message's reactions: the counts,
// and the own reactions of the users it has looked up.
type reactState struct {
	counts []emojiCount // in the order the emoji were first used
	mine   map[string][]string
}

type emojiCount struct {
	emoji string
	n     int
}

// reactions returns the state of a message, read from the store when the
// room does not hold it (or not uid's part of it).
func (r *room) reactions(target uint64, uid string) (*reactState, error) {
	st := r.reacts[target]
	if st != nil {
		if _, ok := st.mine[uid]; ok {
			return st, nil
		}
	}
	counts, mine, err := r.hub.store.Reactions(r.name, target, uid)
	if err != nil {
		return nil, err
	}
	var own []string
	if len(mine) > 0 {
		if err := json.Unmarshal(mine, &own); err != nil {
			return nil, fmt.Errorf("reactions of %d: %w", target, err)
		}
	}
	if st == nil { // else the room's counts are newer than the store's: pending ones are in them
		st = &reactState{mine: map[string][]string{}}
		if st.counts, err = decodeCounts(counts); err != nil {
			return nil, fmt.Errorf("reactions of %d: %w", target, err)
		}
		if r.reacts == nil {
			r.reacts = map[uint64]*reactState{}
		}
		r.reacts[target] = st
	}
	st.mine[uid] = own
	return st, nil
}

// toggle turns uid's emoji on the message on or off; it reports which, or why not.
func (st *reactState) toggle(uid, emoji string) (bool, string) {
	own := st.mine[uid]
	for i, e := range own {
		if e != emoji {
			continue
		}
		st.mine[uid] = append(own[:i:i], own[i+1:]...)
		for j := range st.counts {
			if st.counts[j].emoji == emoji {
				if st.counts[j].n--; st.counts[j].n <= 0 {
					st.counts = append(st.counts[:j:j], st.counts[j+1:]...)
				}
				break
			}
		}
		return false, ""
	}
	for j := range st.counts {
		if st.counts[j].emoji == emoji {
			st.counts[j].n++
			st.mine[uid] = append(own[:len(own):len(own)], emoji)
			return true, ""
		}
	}
	if len(st.counts) >= maxEmojiPerMsg {
		return false, fmt.Sprintf("a message takes at most %d different reactions", maxEmojiPerMsg)
	}
	st.counts = append(st.counts, emojiCount{emoji, 1})
	st.mine[uid] = append(own[:len(own):len(own)], emoji)
	return true, ""
}

// effect is the state to store for target after uid's reaction.
func (st *reactState) effect(target uint64, uid string) *persistence.Effect {
	e := &persistence.Effect{Target: target, UID: uid}
	if len(st.counts) > 0 {
		b := []byte{'{'}
		for i, c := range st.counts {
			if i > 0 {
				b = append(b, ',')
			}
			b = protocol.AppendString(b, c.emoji)
			b = append(b, ':')
			b = strconv.AppendInt(b, int64(c.n), 10)
		}
		e.Counts = append(b, '}')
	}
	if own := st.mine[uid]; len(own) > 0 {
		b := []byte{'['}
		for i, emoji := range own {
			if i > 0 {
				b = append(b, ',')
			}
			b = protocol.AppendString(b, emoji)
		}
		e.Mine = append(b, ']')
	}
	return e
}

// decodeCounts reads a counts object keeping the order of its keys.
func decodeCounts(b []byte) ([]emojiCount, error) {
	if len(b) == 0 {
		return nil, nil
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if t, err := d.Token(); err != nil || t != json.Delim('{') {
		return nil, errors.New("reaction counts are not a JSON object")
	}
	var out []emojiCount
	for d.More() {
		k, err := d.Token()
		if err != nil {
			return nil, err
		}
		v, err := d.Token()
		if err != nil {
			return nil, err
		}
		key, _ := k.(string)
		num, _ := v.(json.Number)
		n, err := num.Int64()
		if err != nil || key == "" {
			return nil, errors.New("reaction counts: bad entry")
		}
		out = append(out, emojiCount{key, int(n)})
	}
	return out, nil
}

// markRead queues a read position; the room writes them a burst at a time.
func (r *room) markRead(ctx actor.Context, m persistence.ReadMark) {
	r.reads = append(r.reads, m)
	if !r.readsQueued {
		r.readsQueued = true
		ctx.Send(ctx.Self(), writeReads{})
	}
}

// writeReads writes the queued read positions (a store without them says so
// and is left alone).
func (r *room) writeReads() {
	r.readsQueued = false
	if len(r.reads) == 0 {
		return
	}
	err := r.hub.store.MarkRead(r.reads)
	if err != nil && !errors.Is(err, persistence.ErrUnsupported) {
		r.hub.log.Warn("read positions not stored", "room", r.name, "count", len(r.reads), "err", err)
	}
	clear(r.reads)
	r.reads = r.reads[:0]
}
