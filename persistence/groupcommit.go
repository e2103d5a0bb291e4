package persistence

import (
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// errStoreClosed answers writes that arrive after Close.
var errStoreClosed = errors.New("persistence: store is closed")

// groupBytes is how much message data one group transaction takes at most
// (Badger refuses a transaction above 15 % of a memtable: 2.4 MB here).
const groupBytes = 1 << 20

// gatherAtLeast is how many batches per spacing make a busy store: below it,
// groups are committed as they come.
const gatherAtLeast = 3

// committer is the group commit of room batches: rooms that write at the same
// moment share one Badger transaction instead of paying one each. Each caller
// still waits until its own batch is committed (or refused).
type committer struct {
	mu     sync.Mutex
	queue  []*appendReq
	spare  []*appendReq
	closed bool
	kick   chan struct{}
	wait   time.Duration            // least time between the starts of two groups while batches keep coming; <= 0 none
	part   func([]*appendReq) error // commits one part of a group; nil: commitTogether (tests make it fail)

	groups, waits int // groups committed and waits before one; for tests, which read them after Close
}

type appendReq struct {
	room  string
	msgs  []Message
	bytes int
	err   error
	done  chan struct{}
}

var reqPool = sync.Pool{New: func() any { return &appendReq{done: make(chan struct{}, 1)} }}

// AppendMessages stores a room's batch and its new last id: in one transaction
// with the batches other rooms write at the same time (a batch too big for one
// transaction is split over several, in order).
func (s *Badger) AppendMessages(room string, msgs []Message) error {
	if len(msgs) == 0 {
		return nil
	}
	r := reqPool.Get().(*appendReq)
	r.room, r.msgs, r.err, r.bytes = room, msgs, nil, 0
	for _, m := range msgs {
		r.bytes += len(m.Data) + len(m.CID)
	}
	c := &s.commits
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		reqPool.Put(r)
		return errStoreClosed
	}
	c.queue = append(c.queue, r)
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
	<-r.done
	err := r.err
	r.msgs = nil
	reqPool.Put(r)
	return err
}

// commitLoop is the store's one writer of messages; it ends at Close, failing
// whatever is still queued.
func (s *Badger) commitLoop() {
	defer s.wg.Done()
	c := &s.commits
	var (
		began    time.Time // the last group's start
		due      float64   // batches per spacing lately, smoothed
		winStart time.Time // the batches taken since then, over at least one spacing, make due
		arrived  int
	)
	spacing := time.NewTimer(time.Hour)
	spacing.Stop()
	for {
		select {
		case <-c.kick:
		case <-s.stop:
			c.mu.Lock()
			c.closed = true
			left := c.queue
			c.queue = nil
			c.mu.Unlock()
			for _, r := range left {
				r.finish(errStoreClosed)
			}
			return
		}
		for {
			c.mu.Lock()
			queued := len(c.queue)
			c.mu.Unlock()
			if queued == 0 {
				break
			}
			// Busy: wait out the rest of the spacing, so that the rooms writing
			// meanwhile share the transaction (its fixed cost is most of a small
			// batch's). When fewer batches than gatherAtLeast come per spacing,
			// the wait's own wake-up costs more than it saves: no wait.
			now := time.Now()
			if el := now.Sub(winStart); c.wait > 0 && el >= c.wait {
				due = 0.5*due + 0.5*float64(arrived)*float64(c.wait)/float64(el)
				winStart, arrived = now, 0
			}
			if d := c.wait - now.Sub(began); d > 0 && due >= gatherAtLeast {
				c.waits++
				spacing.Reset(d)
				select {
				case <-spacing.C:
				case <-s.stop:
				}
				now = time.Now()
			}
			c.mu.Lock()
			group := c.queue
			c.queue, c.spare = c.spare[:0], nil
			c.mu.Unlock()
			began, arrived = now, arrived+len(group)
			s.commitGroup(group)
			clear(group)
			c.mu.Lock()
			c.groups++
			if c.spare == nil {
				c.spare = group[:0]
			}
			c.mu.Unlock()
		}
	}
}

func (r *appendReq) finish(err error) {
	r.err = err
	r.done <- struct{}{}
}

// commitGroup writes the queued batches in as few transactions as their size
// allows, each room's batch whole within one of them.
func (s *Badger) commitGroup(group []*appendReq) {
	// all[:done] are finished: their callers may already have put them back in
	// the pool and queued them again, so a panic finishes only the rest.
	all, done := group, 0
	defer func() {
		if p := recover(); p != nil { // a bug here must not leave the rooms waiting for ever
			err := fmt.Errorf("persistence: group commit failed: %v\n%s", p, debug.Stack())
			for _, r := range all[done:] {
				r.finish(err)
			}
		}
	}()
	commit := s.commitTogether
	if s.commits.part != nil {
		commit = s.commits.part
	}
	for len(group) > 0 {
		n, size := 0, 0
		for n < len(group) && (n == 0 || size+group[n].bytes <= groupBytes) {
			size += group[n].bytes
			n++
		}
		part := group[:n]
		group = group[n:]
		err := commit(part)
		if errors.Is(err, badger.ErrTxnTooBig) { // one very large batch: on its own, split in order
			for _, r := range part {
				r.finish(s.appendSplit(r.room, r.msgs))
				done++
			}
			continue
		}
		for _, r := range part {
			r.finish(err)
			done++
		}
	}
}

// commitTogether writes the batches in one transaction (a room's last id is
// its highest message key).
func (s *Badger) commitTogether(part []*appendReq) error {
	txn := s.db.NewTransaction(true)
	defer txn.Discard()
	for _, r := range part {
		for _, m := range r.msgs {
			if err := writeMessage(txn, r.room, m); err != nil {
				return err
			}
		}
	}
	return txn.Commit()
}
