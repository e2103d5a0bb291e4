package persistence

import (
	"errors"
	"slices"
)

// StoreWithoutEffects does what AppendMessages does for a batch with events
// up to a crash of its writer: the pending mark is raised and the entry
// stored, but no effect is applied.
func (s *JetStream) StoreWithoutEffects(room string, msgs []Message) error {
	ctx, cancel := s.ctx()
	defer cancel()
	t, err := s.loadTail(ctx, room)
	if err != nil {
		return err
	}
	if err := s.markPending(ctx, room, msgs[0].ID, msgs[len(msgs)-1].ID); err != nil {
		return err
	}
	defer s.forget(room)
	_, err = s.publish(ctx, s.roomSubject(room), msgs, t.seq)
	return err
}

// MarkPendingOnly raises the pending mark as a writer does just before it
// dies without storing its entry.
func (s *JetStream) MarkPendingOnly(room string, first, last uint64) error {
	ctx, cancel := s.ctx()
	defer cancel()
	return s.markPending(ctx, room, first, last)
}

// PendingMark is the room's pending mark, found false when there is none.
func (s *JetStream) PendingMark(room string) (uint64, bool, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	v, _, err := s.get(ctx, s.effects, pendingKey(room), readLeader)
	if errors.Is(err, ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	p, _, err := parseMark(v)
	return p, true, err
}

// EffectKeys lists the room's records in the effects bucket (not its
// pending mark), sorted.
func (s *JetStream) EffectKeys(room string) ([]string, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	keys, err := s.effectKeys(ctx, token(room)+".>")
	keys = slices.DeleteFunc(keys, func(k string) bool { return k == pendingKey(room) })
	slices.Sort(keys)
	return keys, err
}

// StreamName is the name of the room history stream.
func (s *JetStream) StreamName() string { return s.stream }

// PublishOnly stores msgs as one entry and does nothing else: no pending
// mark, no effect (one entry of a batch whose writer set the mark).
func (s *JetStream) PublishOnly(room string, msgs []Message) error {
	ctx, cancel := s.ctx()
	defer cancel()
	t, err := s.loadTail(ctx, room)
	if err != nil {
		return err
	}
	defer s.forget(room)
	_, err = s.publish(ctx, s.roomSubject(room), msgs, t.seq)
	return err
}
