package persistence

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// writeMessage puts a message (or an event and its effect) into txn.
func writeMessage(txn *badger.Txn, room string, m Message) error {
	if err := txn.Set(messageKey(room, m.ID), messageValue(m)); err != nil {
		return err
	}
	if m.Effect == nil {
		return nil
	}
	e := m.Effect
	if e.Recall != nil {
		return recallIn(txn, room, e)
	}
	if err := setOrDelete(txn, countsKey(room, e.Target), e.Counts); err != nil {
		return err
	}
	return setOrDelete(txn, mineKey(room, e.Target, e.UID), e.Mine)
}

// recallIn replaces the target's object with the recall's, keeping its cid,
// and deletes its reactions. A target already trimmed away stays away.
func recallIn(txn *badger.Txn, room string, e *Effect) error {
	key := messageKey(room, e.Target)
	item, err := txn.Get(key)
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
		return nil
	case err != nil:
		return err
	}
	var cid string
	if err := item.Value(func(b []byte) error {
		if i := bytes.IndexByte(b, 0); i >= 0 {
			cid = string(b[i+1:])
		}
		return nil
	}); err != nil {
		return err
	}
	if err := txn.Set(key, messageValue(Message{Data: e.Recall, CID: cid})); err != nil {
		return err
	}
	if err := txn.Delete(countsKey(room, e.Target)); err != nil {
		return err
	}
	prefix := mineTargetPrefix(room, e.Target)
	var keys [][]byte
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	for it.Rewind(); it.ValidForPrefix(prefix); it.Next() {
		keys = append(keys, it.Item().KeyCopy(nil))
	}
	it.Close()
	for _, k := range keys {
		if err := txn.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

func setOrDelete(txn *badger.Txn, key, val []byte) error {
	if len(val) == 0 {
		return txn.Delete(key)
	}
	return txn.Set(key, val)
}

// SupportsEvents: Badger applies recalls and reactions.
func (s *Badger) SupportsEvents() bool { return true }

func (s *Badger) Reactions(room string, target uint64, uid string) (counts, mine []byte, err error) {
	err = s.db.View(func(txn *badger.Txn) error {
		var err error
		counts, mine, err = txnReactions(txn, room, target, uid)
		return err
	})
	return counts, mine, err
}

func txnReactions(txn *badger.Txn, room string, target uint64, uid string) (counts, mine []byte, err error) {
	if counts, err = txnValue(txn, countsKey(room, target)); err != nil || counts == nil || uid == "" {
		return counts, nil, err
	}
	mine, err = txnValue(txn, mineKey(room, target, uid))
	return counts, mine, err
}

// txnValue is the value at key, nil when there is none.
func txnValue(txn *badger.Txn, key []byte) ([]byte, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return item.ValueCopy(nil)
}

// History reads the page, its reactions and the last id in one transaction.
func (s *Badger) History(room string, before uint64, limit int, q HistoryQuery) (HistoryPage, error) {
	var page HistoryPage
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		if page.LastID, err = txnLastID(txn, room); err != nil {
			return err
		}
		if before <= 1 || limit <= 0 {
			return nil
		}
		prefix := messagePrefix(room)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, Reverse: true, PrefetchValues: true, PrefetchSize: min(limit, 100)})
		for it.Seek(messageKey(room, before-1)); it.ValidForPrefix(prefix) && len(page.Items) < limit; it.Next() {
			m, err := readMessage(it.Item())
			if err != nil {
				it.Close()
				return err
			}
			if visible(m.Data, q) {
				page.Items = append(page.Items, HistoryItem{Message: m})
			}
		}
		it.Close()
		if !q.Reactions {
			return nil
		}
		for i := range page.Items {
			item := &page.Items[i]
			if item.Counts, item.Mine, err = txnReactions(txn, room, item.ID, q.UID); err != nil {
				return err
			}
		}
		return nil
	})
	reverseItems(page.Items)
	return page, err
}

// visible reports whether a stored object belongs on a History page.
func visible(data []byte, q HistoryQuery) bool {
	if len(data) > 2 && data[2] == 't' { // an event: {"type":..
		return false
	}
	return q.Recalled || !bytes.HasSuffix(data, []byte(`,"recalled":true}`))
}

func reverseItems(items []HistoryItem) {
	for i, j := 0, len(items)-1; i < j; i, j = i+1, j-1 {
		items[i], items[j] = items[j], items[i]
	}
}

// MarkRead reads and writes the positions in one transaction under readMu.
func (s *Badger) MarkRead(marks []ReadMark) error {
	if len(marks) == 0 {
		return nil
	}
	s.readMu.Lock()
	defer s.readMu.Unlock()
	return s.db.Update(func(txn *badger.Txn) error {
		for _, m := range marks {
			key := readKey(m.UID, m.Room)
			cur, err := txnValue(txn, key)
			if err != nil {
				return err
			}
			if cur != nil && len(cur) != 8 {
				return fmt.Errorf("corrupt read position %q", key)
			}
			if cur != nil && (m.OnlyNew || binary.BigEndian.Uint64(cur) >= m.ID) {
				continue
			}
			if cur == nil && countKeys(txn, readPrefix(m.UID), MaxReadRooms) >= MaxReadRooms {
				continue
			}
			if err := txn.Set(key, binary.BigEndian.AppendUint64(nil, m.ID)); err != nil {
				return err
			}
		}
		return nil
	})
}

// countKeys counts the keys under prefix, the txn's own writes included, up to limit.
func countKeys(txn *badger.Txn, prefix []byte, limit int) int {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	n := 0
	for it.Rewind(); it.ValidForPrefix(prefix) && n < limit; it.Next() {
		n++
	}
	return n
}

func (s *Badger) ReadPositions(uid string) ([]ReadPosition, error) {
	var out []ReadPosition
	err := s.db.View(func(txn *badger.Txn) error {
		prefix := readPrefix(uid)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.ValidForPrefix(prefix); it.Next() {
			var id uint64
			if err := it.Item().Value(func(b []byte) error {
				if len(b) != 8 {
					return fmt.Errorf("corrupt read position %q", it.Item().Key())
				}
				id = binary.BigEndian.Uint64(b)
				return nil
			}); err != nil {
				return err
			}
			out = append(out, ReadPosition{Room: string(it.Item().Key()[len(prefix):]), ID: id})
		}
		return nil
	})
	return out, err
}

func (s *Badger) ReadPosition(uid, room string) (uint64, error) {
	var id uint64
	err := s.db.View(func(txn *badger.Txn) error {
		b, err := txnValue(txn, readKey(uid, room))
		switch {
		case err != nil:
			return err
		case b == nil:
			return ErrNotFound
		case len(b) != 8:
			return fmt.Errorf("corrupt read position of %s in %s", uid, room)
		}
		id = binary.BigEndian.Uint64(b)
		return nil
	})
	return id, err
}

// trimReactions adds to wb the deletion of the reactions on messages below keepFrom.
func (s *Badger) trimReactions(wb *badger.WriteBatch, room string, keepFrom uint64) error {
	return s.db.View(func(txn *badger.Txn) error {
		for _, prefix := range [][]byte{countsPrefix(room), minePrefix(room)} {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
			for it.Rewind(); it.ValidForPrefix(prefix); it.Next() {
				k := it.Item().Key()
				if len(k) < len(prefix)+8 || binary.BigEndian.Uint64(k[len(prefix):]) >= keepFrom {
					break
				}
				if err := wb.Delete(it.Item().KeyCopy(nil)); err != nil {
					it.Close()
					return err
				}
			}
			it.Close()
		}
		return nil
	})
}
