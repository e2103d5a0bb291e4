package actors

import "time"

// cidWindow is how long a re-sent cid finds its original message.
const cidWindow = 2 * time.Minute

// maxCIDs bounds a room's index: the newest this many cids are remembered.
const maxCIDs = 10000

// cidIndex maps a user's recent cids in a room to the ids they were given, so
// that a client re-sending after a reconnect stores nothing twice.
type cidIndex struct {
	ids   map[cidKey]cidEntry
	order []cidSeen // oldest first, from head
	head  int
}

type cidKey struct{ uid, cid string }

type cidEntry struct {
	id uint64
	at time.Time
}

type cidSeen struct {
	key cidKey
	id  uint64
}

func (x *cidIndex) get(uid, cid string, now time.Time) (uint64, bool) {
	e, ok := x.ids[cidKey{uid, cid}]
	if !ok || now.Sub(e.at) > cidWindow {
		return 0, false
	}
	return e.id, true
}

func (x *cidIndex) put(uid, cid string, id uint64, at time.Time) {
	if x.ids == nil { // most rooms never see a cid
		x.ids = map[cidKey]cidEntry{}
	}
	k := cidKey{uid, cid}
	x.ids[k] = cidEntry{id: id, at: at}
	x.order = append(x.order, cidSeen{k, id})
	x.prune(at)
}

// forget drops a cid whose message was not stored: a re-send must store it.
func (x *cidIndex) forget(uid, cid string, id uint64) {
	k := cidKey{uid, cid}
	if e, ok := x.ids[k]; ok && e.id == id {
		delete(x.ids, k)
	}
}

func (x *cidIndex) prune(now time.Time) {
	for x.head < len(x.order) {
		s := x.order[x.head]
		e, ok := x.ids[s.key]
		live := len(x.order)-x.head <= maxCIDs
		if ok && e.id == s.id {
			if live && now.Sub(e.at) <= cidWindow {
				break
			}
			delete(x.ids, s.key)
		}
		x.order[x.head] = cidSeen{}
		x.head++
	}
	if x.head > 64 && x.head > len(x.order)/2 { // compact
		n := copy(x.order, x.order[x.head:])
		clear(x.order[n:])
		x.order, x.head = x.order[:n], 0
	}
	if len(x.ids) == 0 && x.head == len(x.order) {
		x.ids, x.order, x.head = nil, nil, 0
	}
}
