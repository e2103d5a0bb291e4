package persistence

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// Recalls, reactions and read positions on JetStream.
//
// A room's entries cannot be edited, so what events do to earlier messages
// lives beside them, in the bucket effects, and is applied when messages are
// read. Its keys, per room (<room> and <uid> as token writes them):
//
//	<room>.p                 pending: <first>-<last>, a batch whose effects may not be applied yet
//	<room>.r.<block>         recalls: target → the stub that replaces it
//	<room>.c.<block>         reaction counts: target → {"👍":3,..}
//	<room>.m.<block>.<uid>   the user's own reactions: target → ["👍",..]
//
// A block is effectBlock consecutive target ids, so a page of messages needs
// one or two records. Each value in a record carries the id of the event that
// set it, and a write keeps the value of the later event: applying an event's
// effect twice, or an older one after a newer one, changes nothing. That is
// what makes the crash between storing an entry and applying its effects
// safe: the writer sets the pending mark (its batch's ids) before the entry
// is published and clears it once its effects are applied; any reader or
// writer that finds the mark applies the effects of the entries from it on
// (they are in the entries: format 2) before it answers. A reader reads the mark after the entries, so
// the content of a recalled message is never returned once its recall can be.
//
// A recall in the same batch as its target erases the content before the
// entry is written; one of an earlier batch leaves it in that entry's bytes,
// unread, until TrimMessages purges the entry.
const effectBlock = 256

// SupportsEvents: JetStream applies recalls and reactions.
func (s *JetStream) SupportsEvents() bool { return true }

// ---- keys ----

func pendingKey(room string) string { return token(room) + ".p" }

func effectKey(room string, kind byte, block uint64) string {
	return token(room) + "." + string(kind) + "." + strconv.FormatUint(block, 10)
}

func ownKey(room string, block uint64, uid string) string {
	return effectKey(room, 'm', block) + "." + token(uid)
}

// ---- records ----

// effValue is what the event ev set for target (empty: nothing, a tombstone
// that keeps older events from setting it again).
type effValue struct {
	target, ev uint64
	val        []byte
}

// effRecord holds one block's values, by target.
type effRecord []effValue

// set stores v unless the record holds a value of a later (or the same) event.
func (r *effRecord) set(v effValue) bool {
	i, found := slices.BinarySearchFunc(*r, v.target, func(e effValue, t uint64) int { return cmpU64(e.target, t) })
	if !found {
		*r = slices.Insert(*r, i, v)
		return true
	}
	if (*r)[i].ev >= v.ev {
		return false
	}
	(*r)[i] = v
	return true
}

func (r effRecord) get(target uint64) []byte {
	i, found := slices.BinarySearchFunc(r, target, func(e effValue, t uint64) int { return cmpU64(e.target, t) })
	if !found || len(r[i].val) == 0 {
		return nil
	}
	return r[i].val
}

// dropBelow removes the values of targets below id.
func (r *effRecord) dropBelow(id uint64) bool {
	n := len(*r)
	*r = slices.DeleteFunc(*r, func(v effValue) bool { return v.target < id })
	return len(*r) != n
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// A record is a version byte, then target, event and value of each, uvarints
// and a length-prefixed value.
func (r effRecord) encode() []byte {
	b := []byte{1}
	for _, v := range r {
		b = binary.AppendUvarint(b, v.target)
		b = binary.AppendUvarint(b, v.ev)
		b = binary.AppendUvarint(b, uint64(len(v.val)))
		b = append(b, v.val...)
	}
	return b
}

func decodeRecord(b []byte) (effRecord, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if b[0] != 1 {
		return nil, errors.New("unknown record format")
	}
	b = b[1:]
	var out effRecord
	for len(b) > 0 {
		var nums [3]uint64
		for i := range nums {
			n, k := binary.Uvarint(b)
			if k <= 0 {
				return nil, errors.New("truncated record")
			}
			nums[i], b = n, b[k:]
		}
		if nums[2] > uint64(len(b)) {
			return nil, errors.New("truncated record")
		}
		out = append(out, effValue{target: nums[0], ev: nums[1], val: b[:nums[2]:nums[2]]})
		b = b[nums[2]:]
	}
	return out, nil
}

// records reads keys from the bucket's leader (a missing one is empty), side by side.
func (s *JetStream) records(ctx context.Context, keys []string) ([]effRecord, error) {
	out := make([]effRecord, len(keys))
	err := each(keys, func(i int, key string) error {
		data, _, err := s.get(ctx, s.effects, key, readLeader)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if out[i], err = decodeRecord(data); err != nil {
			return fmt.Errorf("record %s: %w", key, err)
		}
		return nil
	})
	return out, err
}

// update changes a record with compare-and-set. A change that a replica's
// copy already holds (or has a later event's value for) is not written: the
// leader's copy is newer still, values only move forward.
func (s *JetStream) update(ctx context.Context, key string, mode readMode, change func(*effRecord) bool) error {
	for {
		data, rev, err := s.get(ctx, s.effects, key, mode)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		rec, err := decodeRecord(data)
		if err != nil {
			return fmt.Errorf("record %s: %w", key, err)
		}
		if !change(&rec) {
			return nil
		}
		if err = s.cas(ctx, s.effects, key, rec.encode(), rev); !errors.Is(err, errCAS) {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("record %s kept changing: %w", key, ctx.Err())
		}
		mode = readLeader
	}
}

// each runs f on every item, a few at a time, and joins their errors.
func each[T any](items []T, f func(int, T) error) error {
	if len(items) == 1 {
		return f(0, items[0])
	}
	errs := make([]error, len(items))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, it := range items {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			errs[i] = f(i, it)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// ---- effects in entries (format 2) ----

// Effect kinds in an entry.
const (
	effNone     = 0
	effRecall   = 1
	effReaction = 2
)

func effectSize(e *Effect) int {
	if e == nil {
		return 0
	}
	return 5*binary.MaxVarintLen64 + len(e.Recall) + len(e.UID) + len(e.Counts) + len(e.Mine)
}

// appendEffect writes a message's effect after its cid: its kind, then the
// target and the recall's stub, or the target, uid, counts and own reactions.
func appendEffect(b []byte, e *Effect) []byte {
	field := func(v []byte) {
		b = binary.AppendUvarint(b, uint64(len(v)))
		b = append(b, v...)
	}
	switch {
	case e == nil:
		return append(b, effNone)
	case e.Recall != nil:
		b = append(b, effRecall)
		b = binary.AppendUvarint(b, e.Target)
		field(e.Recall)
	default:
		b = append(b, effReaction)
		b = binary.AppendUvarint(b, e.Target)
		field([]byte(e.UID))
		field(e.Counts)
		field(e.Mine)
	}
	return b
}

// readEffect reads the effect at the start of b and returns the rest.
func readEffect(b []byte) (*Effect, []byte, error) {
	bad := errors.New("truncated effect")
	if len(b) == 0 {
		return nil, nil, bad
	}
	kind, b := b[0], b[1:]
	if kind == effNone {
		return nil, b, nil
	}
	target, k := binary.Uvarint(b)
	if k <= 0 {
		return nil, nil, bad
	}
	b = b[k:]
	field := func() ([]byte, bool) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return nil, false
		}
		v := b[k : k+int(n) : k+int(n)]
		b = b[k+int(n):]
		return v, true
	}
	e := &Effect{Target: target}
	switch kind {
	case effRecall:
		v, ok := field()
		if !ok {
			return nil, nil, bad
		}
		e.Recall = v
	case effReaction:
		uid, ok1 := field()
		counts, ok2 := field()
		mine, ok3 := field()
		if !ok1 || !ok2 || !ok3 {
			return nil, nil, bad
		}
		e.UID = string(uid)
		if len(counts) > 0 {
			e.Counts = counts
		}
		if len(mine) > 0 {
			e.Mine = mine
		}
	default:
		return nil, nil, fmt.Errorf("unknown effect kind %d", kind)
	}
	return e, b, nil
}

// recalledWithin maps the ids of a batch's messages that a recall of the same
// batch erases to the stubs that replace them.
func recalledWithin(msgs []Message) map[uint64][]byte {
	var out map[uint64][]byte
	for _, m := range msgs {
		if e := m.Effect; e != nil && e.Recall != nil && e.Target >= msgs[0].ID && e.Target < m.ID {
			if out == nil {
				out = map[uint64][]byte{}
			}
			out[e.Target] = e.Recall
		}
	}
	return out
}

func hasEffects(msgs []Message) bool {
	return slices.ContainsFunc(msgs, func(m Message) bool { return m.Effect != nil })
}

// ---- the pending mark ----

// The pending mark is "<first>-<last>": the ids of the batch whose effects
// may not be applied yet (effects of ids from first on, at least up to last).
func formatMark(first, last uint64) []byte {
	return fmt.Appendf(nil, "%d-%d", first, last)
}

func parseMark(v []byte) (first, last uint64, err error) {
	a, b, ok := strings.Cut(string(v), "-")
	first, err1 := strconv.ParseUint(a, 10, 64)
	last, err2 := strconv.ParseUint(b, 10, 64)
	if !ok || err1 != nil || err2 != nil || last < first {
		return 0, 0, fmt.Errorf("bad pending mark %q", v)
	}
	return first, last, nil
}

// markPending sets the room's pending mark to the batch first..last before
// the batch is published. An older mark is settled first; a mark from first
// on (a writer whose entry never got stored) is replaced.
func (s *JetStream) markPending(ctx context.Context, room string, first, last uint64) error {
	key := pendingKey(room)
	for {
		v, rev, err := s.get(ctx, s.effects, key, readLeader)
		switch {
		case errors.Is(err, ErrNotFound):
		case err != nil:
			return err
		default:
			if p, _, perr := parseMark(v); perr != nil || p < first {
				if err := s.settle(ctx, room); err != nil {
					return err
				}
				if ctx.Err() != nil {
					return fmt.Errorf("pending effects of %s: %w", room, ctx.Err())
				}
				continue
			}
		}
		err = s.cas(ctx, s.effects, key, formatMark(first, last), rev)
		if !errors.Is(err, errCAS) {
			return err
		}
	}
}

// applyStored applies the effects of a batch just stored and clears the mark
// it set, unless the mark changed meanwhile (then it settles it: whatever
// changed it may not have applied its own).
func (s *JetStream) applyStored(ctx context.Context, room string, msgs []Message) error {
	if err := s.applyEffects(ctx, room, msgs); err != nil {
		return err
	}
	key := pendingKey(room)
	v, rev, err := s.get(ctx, s.effects, key, readLeader)
	switch {
	case errors.Is(err, ErrNotFound): // a reader applied them and cleared it
		return nil
	case err != nil:
		return err
	case !bytes.Equal(v, formatMark(msgs[0].ID, msgs[len(msgs)-1].ID)):
		return s.settle(ctx, room)
	}
	if err := s.remove(ctx, s.effects, key, jetstream.LastRevision(rev)); !errors.Is(err, errCAS) {
		return err
	}
	return s.settle(ctx, room)
}

// settle applies the effects of the room's entries from its pending mark on,
// then clears the mark if nobody changed it meanwhile. A mark whose batch is
// not wholly stored stays: its writer may be between two entries of it, or
// its entry may never be stored (then the next writer of those ids takes it).
func (s *JetStream) settle(ctx context.Context, room string) error {
	key := pendingKey(room)
	v, rev, err := s.get(ctx, s.effects, key, readLeader)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	p, q, err := parseMark(v)
	if err != nil {
		return fmt.Errorf("room %q: %w", room, err)
	}
	subj := s.roomSubject(room)
	last, ok, err := s.lastEntry(ctx, subj)
	if err != nil || !ok || last.last < p {
		return err
	}
	e, ok, err := s.findEntry(ctx, subj, p, last)
	if err != nil {
		return err
	}
	var events []Message
	for ok {
		msgs, err := decodeEntry(e.msg.Data)
		if err != nil {
			return fmt.Errorf("entry %d of %s: %w", e.seq, subj, err)
		}
		for _, m := range msgs {
			if m.ID >= p && m.Effect != nil {
				events = append(events, m)
			}
		}
		if e.seq >= last.seq {
			break
		}
		if e, ok, err = s.nextEntry(ctx, subj, e.seq+1, last.seq); err != nil {
			return err
		}
	}
	if len(events) > 0 {
		s.log.Info("applying effects a writer left pending", "room", room, "from", p, "events", len(events))
		if err := s.applyEffects(ctx, room, events); err != nil {
			return err
		}
	}
	if last.last < q {
		return nil
	}
	if err := s.remove(ctx, s.effects, key, jetstream.LastRevision(rev)); !errors.Is(err, errCAS) {
		return err
	}
	return nil // changed meanwhile: by a writer, which settles what it finds
}

// ---- applying effects ----

// applyEffects writes what the events among msgs do: each record they touch
// is changed once, with compare-and-set. A recall's stub goes to the recall
// record, and its target's counts and every user's own reactions on it become
// tombstones. Effects on targets not before their event are ignored.
func (s *JetStream) applyEffects(ctx context.Context, room string, msgs []Message) error {
	changes := map[string][]effValue{}
	type recalled struct{ block, target, ev uint64 }
	var recalls []recalled
	for _, m := range msgs {
		e := m.Effect
		if e == nil || e.Target >= m.ID {
			continue
		}
		block := e.Target / effectBlock
		if e.Recall != nil {
			changes[effectKey(room, 'r', block)] = append(changes[effectKey(room, 'r', block)], effValue{e.Target, m.ID, e.Recall})
			changes[effectKey(room, 'c', block)] = append(changes[effectKey(room, 'c', block)], effValue{e.Target, m.ID, nil})
			recalls = append(recalls, recalled{block, e.Target, m.ID})
			continue
		}
		changes[effectKey(room, 'c', block)] = append(changes[effectKey(room, 'c', block)], effValue{e.Target, m.ID, e.Counts})
		if e.UID != "" {
			k := ownKey(room, block, e.UID)
			changes[k] = append(changes[k], effValue{e.Target, m.ID, e.Mine})
		}
	}
	for _, r := range recalls { // every user's own reactions on the target go
		prefix := effectKey(room, 'm', r.block) + "."
		keys, err := s.effectKeys(ctx, prefix+"*")
		if err != nil {
			return err
		}
		for k := range changes {
			if strings.HasPrefix(k, prefix) {
				keys = append(keys, k)
			}
		}
		for _, k := range keys {
			changes[k] = append(changes[k], effValue{r.target, r.ev, nil})
		}
	}
	keys := make([]string, 0, len(changes))
	for k := range changes {
		keys = append(keys, k)
	}
	return each(keys, func(_ int, key string) error {
		return s.update(ctx, key, readNear, func(r *effRecord) bool {
			changed := false
			for _, v := range changes[key] {
				changed = r.set(v) || changed
			}
			return changed
		})
	})
}

// effectKeys lists the keys of the effects bucket that match filter (one
// request to the bucket's leader: the subjects it holds).
func (s *JetStream) effectKeys(ctx context.Context, filter string) ([]string, error) {
	var keys []string
	err := jsRetry(ctx, "list "+s.effects.name, func(ctx context.Context) error {
		info, err := s.effects.stream.Info(ctx, jetstream.WithSubjectFilter(s.effects.subj+filter))
		if err != nil {
			return err
		}
		keys = keys[:0]
		for subj := range info.State.Subjects {
			keys = append(keys, strings.TrimPrefix(subj, s.effects.subj))
		}
		return nil
	})
	return keys, err
}

// ---- reading with effects ----

// applyRecalls replaces recalled messages among msgs (read from the room's
// entries just before) with their stubs, keeping their cids. Effects left
// pending are applied first.
func (s *JetStream) applyRecalls(ctx context.Context, room string, msgs []Message) error {
	if len(msgs) == 0 {
		return nil
	}
	if err := s.settle(ctx, room); err != nil {
		return fmt.Errorf("room %q: pending effects: %w", room, err)
	}
	var keys []string
	for b := msgs[0].ID / effectBlock; b <= msgs[len(msgs)-1].ID/effectBlock; b++ {
		keys = append(keys, effectKey(room, 'r', b))
	}
	recs, err := s.records(ctx, keys)
	if err != nil {
		return fmt.Errorf("room %q: recalls: %w", room, err)
	}
	first := msgs[0].ID / effectBlock
	for i := range msgs {
		if stub := recs[msgs[i].ID/effectBlock-first].get(msgs[i].ID); stub != nil {
			msgs[i].Data = stub
		}
	}
	return nil
}

func (s *JetStream) Reactions(room string, target uint64, uid string) (counts, mine []byte, err error) {
	ctx, cancel := s.ctx()
	defer cancel()
	if err := s.settle(ctx, room); err != nil {
		return nil, nil, fmt.Errorf("room %q: pending effects: %w", room, err)
	}
	items := []HistoryItem{{Message: Message{ID: target}}}
	if err := s.addReactions(ctx, room, items, uid); err != nil {
		return nil, nil, err
	}
	return items[0].Counts, items[0].Mine, nil
}

// addReactions sets the counts of every item (ids ascending) and uid's own
// reactions where there are counts.
func (s *JetStream) addReactions(ctx context.Context, room string, items []HistoryItem, uid string) error {
	if len(items) == 0 {
		return nil
	}
	first, last := items[0].ID/effectBlock, items[len(items)-1].ID/effectBlock
	var keys []string
	for b := first; b <= last; b++ {
		keys = append(keys, effectKey(room, 'c', b))
		if uid != "" {
			keys = append(keys, ownKey(room, b, uid))
		}
	}
	recs, err := s.records(ctx, keys)
	if err != nil {
		return fmt.Errorf("room %q: reactions: %w", room, err)
	}
	per := 1
	if uid != "" {
		per = 2
	}
	for i := range items {
		it := &items[i]
		j := int(it.ID/effectBlock-first) * per
		if it.Counts = bytes.Clone(recs[j].get(it.ID)); it.Counts != nil && uid != "" {
			it.Mine = bytes.Clone(recs[j+1].get(it.ID))
		}
	}
	return nil
}

// History reads windows of ids downwards from before, each twice as large as
// the last, until the page is full: events and (unless q.Recalled) recalled
// messages are passed over. LastID is that of the room's last entry, read
// before the page.
func (s *JetStream) History(room string, before uint64, limit int, q HistoryQuery) (HistoryPage, error) {
	var page HistoryPage
	ctx, cancel := s.ctx()
	defer cancel()
	subj := s.roomSubject(room)
	last, ok, err := s.lastEntry(ctx, subj)
	if err != nil || !ok {
		return page, err
	}
	page.LastID = last.last
	if before <= 1 || limit <= 0 {
		return page, nil
	}
	floor := max(s.trimmed(ctx, room), 1)
	to, window := min(before-1, last.last), uint64(limit)
	var items []HistoryItem // newest first
	for to >= floor && len(items) < limit {
		from := floor
		if to-floor >= window {
			from = to - window + 1
		}
		e, ok, err := s.findEntry(ctx, subj, from, last)
		if err != nil {
			return page, err
		}
		if !ok {
			break
		}
		msgs, err := s.collect(ctx, subj, e, last, from, to, int(to-from+1))
		if err == nil {
			err = s.applyRecalls(ctx, room, msgs)
		}
		if err != nil {
			return page, err
		}
		for i := len(msgs) - 1; i >= 0 && len(items) < limit; i-- {
			if visible(msgs[i].Data, q) {
				items = append(items, HistoryItem{Message: msgs[i]})
			}
		}
		if from == floor {
			break
		}
		to, window = from-1, min(2*window, 4096)
	}
	reverseItems(items)
	if q.Reactions {
		if err := s.addReactions(ctx, room, items, q.UID); err != nil {
			return page, err
		}
	}
	page.Items = items
	return page, nil
}

// trimEffects deletes the records of blocks wholly below end and the values
// below end from the block that holds it.
func (s *JetStream) trimEffects(ctx context.Context, room string, end uint64) error {
	keys, err := s.effectKeys(ctx, token(room)+".>")
	if err != nil {
		return err
	}
	var whole, part []string
	for _, key := range keys {
		parts := strings.Split(key, ".") // room, kind, block[, uid]
		if len(parts) < 3 {
			continue // the pending mark
		}
		block, err := strconv.ParseUint(parts[2], 10, 64)
		switch {
		case err != nil:
		case (block+1)*effectBlock <= end:
			whole = append(whole, key)
		case block*effectBlock < end:
			part = append(part, key)
		}
	}
	err = each(whole, func(_ int, key string) error {
		return jsRetry(ctx, "trim "+key, func(ctx context.Context) error {
			return s.effects.stream.Purge(ctx, jetstream.WithPurgeSubject(s.effects.subj+key))
		})
	})
	return errors.Join(err, each(part, func(_ int, key string) error {
		return s.update(ctx, key, readLeader, func(r *effRecord) bool { return r.dropBelow(end) })
	}))
}

// ---- read positions ----

// MarkRead writes each user's marks in one compare-and-set of the user's
// record (users side by side): a lower id never moves a position back, also
// when nodes write at once.
func (s *JetStream) MarkRead(marks []ReadMark) error {
	if len(marks) == 0 {
		return nil
	}
	byUID := map[string][]ReadMark{}
	var uids []string
	for _, m := range marks {
		if _, ok := byUID[m.UID]; !ok {
			uids = append(uids, m.UID)
		}
		byUID[m.UID] = append(byUID[m.UID], m)
	}
	ctx, cancel := s.ctx()
	defer cancel()
	return each(uids, func(_ int, uid string) error {
		key, mode := token(uid), readNear
		for {
			data, rev, err := s.get(ctx, s.reads, key, mode)
			if err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
			pos, err := decodePositions(data)
			if err != nil {
				return fmt.Errorf("read positions of %s: %w", uid, err)
			}
			changed := false
			for _, m := range byUID[uid] {
				changed = markPosition(&pos, m) || changed
			}
			if !changed { // positions only move forward: a replica's copy is enough to tell
				return nil
			}
			if err = s.cas(ctx, s.reads, key, encodePositions(pos), rev); !errors.Is(err, errCAS) {
				return err
			}
			if ctx.Err() != nil {
				return fmt.Errorf("read positions of %s kept changing: %w", uid, ctx.Err())
			}
			mode = readLeader
		}
	})
}

func markPosition(pos *[]ReadPosition, m ReadMark) bool {
	i, found := slices.BinarySearchFunc(*pos, m.Room, func(p ReadPosition, room string) int { return strings.Compare(p.Room, room) })
	switch {
	case !found && len(*pos) >= MaxReadRooms:
		return false
	case !found:
		*pos = slices.Insert(*pos, i, ReadPosition{Room: m.Room, ID: m.ID})
	case m.OnlyNew || (*pos)[i].ID >= m.ID:
		return false
	default:
		(*pos)[i].ID = m.ID
	}
	return true
}

func (s *JetStream) ReadPositions(uid string) ([]ReadPosition, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	data, _, err := s.get(ctx, s.reads, token(uid), readLeader)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	pos, err := decodePositions(data)
	if err != nil {
		return nil, fmt.Errorf("read positions of %s: %w", uid, err)
	}
	return pos, nil
}

func (s *JetStream) ReadPosition(uid, room string) (uint64, error) {
	pos, err := s.ReadPositions(uid)
	if err != nil {
		return 0, err
	}
	i, found := slices.BinarySearchFunc(pos, room, func(p ReadPosition, room string) int { return strings.Compare(p.Room, room) })
	if !found {
		return 0, ErrNotFound
	}
	return pos[i].ID, nil
}

// A user's positions: a version byte, then each room (length-prefixed) and
// its id, uvarints, ordered by room.
func encodePositions(pos []ReadPosition) []byte {
	b := []byte{1}
	for _, p := range pos {
		b = binary.AppendUvarint(b, uint64(len(p.Room)))
		b = append(b, p.Room...)
		b = binary.AppendUvarint(b, p.ID)
	}
	return b
}

func decodePositions(b []byte) ([]ReadPosition, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if b[0] != 1 {
		return nil, errors.New("unknown format")
	}
	b = b[1:]
	var out []ReadPosition
	for len(b) > 0 {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return nil, errors.New("truncated")
		}
		room := string(b[k : k+int(n)])
		b = b[k+int(n):]
		id, k := binary.Uvarint(b)
		if k <= 0 {
			return nil, errors.New("truncated")
		}
		b = b[k:]
		out = append(out, ReadPosition{Room: room, ID: id})
	}
	return out, nil
}
