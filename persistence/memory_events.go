package persistence

import (
	"bytes"
	"slices"
	"sort"
	"strings"
)

// apply makes an event's effect on the room (under m.mu).
func (r *memRoom) apply(e *Effect) {
	if e.Recall != nil {
		i := sort.Search(len(r.msgs), func(i int) bool { return r.msgs[i].ID >= e.Target })
		if i < len(r.msgs) && r.msgs[i].ID == e.Target {
			r.msgs[i].Data = bytes.Clone(e.Recall) // a new slice: readers may hold the old one
		}
		delete(r.counts, e.Target)
		delete(r.mine, e.Target)
		return
	}
	if len(e.Counts) == 0 {
		delete(r.counts, e.Target)
	} else {
		if r.counts == nil {
			r.counts = map[uint64][]byte{}
		}
		r.counts[e.Target] = bytes.Clone(e.Counts)
	}
	users := r.mine[e.Target]
	if len(e.Mine) == 0 {
		delete(users, e.UID)
		return
	}
	if users == nil {
		if r.mine == nil {
			r.mine = map[uint64]map[string][]byte{}
		}
		users = map[string][]byte{}
		r.mine[e.Target] = users
	}
	users[e.UID] = bytes.Clone(e.Mine)
}

// SupportsEvents: Memory applies recalls and reactions.
func (m *Memory) SupportsEvents() bool { return true }

func (m *Memory) Reactions(room string, target uint64, uid string) (counts, mine []byte, err error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	counts, mine = m.reactions(m.rooms[room], target, uid)
	return counts, mine, nil
}

func (m *Memory) reactions(r *memRoom, target uint64, uid string) (counts, mine []byte) {
	if r == nil {
		return nil, nil
	}
	return bytes.Clone(r.counts[target]), bytes.Clone(r.mine[target][uid])
}

func (m *Memory) History(room string, before uint64, limit int, q HistoryQuery) (HistoryPage, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	r := m.rooms[room]
	var page HistoryPage
	if r == nil {
		return page, nil
	}
	page.LastID = r.last
	if limit <= 0 {
		return page, nil
	}
	j := sort.Search(len(r.msgs), func(i int) bool { return r.msgs[i].ID >= before })
	for i := j - 1; i >= 0 && len(page.Items) < limit; i-- {
		if !visible(r.msgs[i].Data, q) {
			continue
		}
		item := HistoryItem{Message: r.msgs[i].message()}
		if q.Reactions {
			item.Counts, item.Mine = m.reactions(r, item.ID, q.UID)
		}
		page.Items = append(page.Items, item)
	}
	reverseItems(page.Items)
	return page, nil
}

func (m *Memory) MarkRead(marks []ReadMark) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, mk := range marks {
		rooms := m.reads[mk.UID]
		if rooms == nil {
			rooms = map[string]uint64{}
			m.reads[mk.UID] = rooms
		}
		cur, ok := rooms[mk.Room]
		if ok && (mk.OnlyNew || cur >= mk.ID) || !ok && len(rooms) >= MaxReadRooms {
			continue
		}
		rooms[mk.Room] = mk.ID
	}
	return nil
}

func (m *Memory) ReadPositions(uid string) ([]ReadPosition, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []ReadPosition
	for room, id := range m.reads[uid] {
		out = append(out, ReadPosition{Room: room, ID: id})
	}
	slices.SortFunc(out, func(a, b ReadPosition) int { return strings.Compare(a.Room, b.Room) })
	return out, nil
}

func (m *Memory) ReadPosition(uid, room string) (uint64, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	id, ok := m.reads[uid][room]
	if !ok {
		return 0, ErrNotFound
	}
	return id, nil
}
