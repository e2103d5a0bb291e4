package media

import (
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/pandachat/pandachat/persistence"
)

// Uploads are admitted in two steps. Before a byte of the body is read, admit checks
// the disk and the user's quota against what the request says it carries and holds
// that much; once the file is staged and its size known, settle checks again with the
// exact size, under the same lock, so that a burst of uploads by one user never stores
// more than the quota. Every upload in flight holds its bytes until it is recorded
// (accepted) or released (refused), so concurrent uploads see each other.
//
// With Blobs (several nodes) uploads in flight on other nodes are not in held: settle
// then counts the exact size in the store at once, reads the user's usage back and
// takes it out again when that passes the quota (two racing uploads that together pass
// it may then both be refused, never both accepted), or when the upload fails later.
//
// Every accepted upload counts in full, also when the same bytes are stored already:
// the answer never tells whether they were, and the quota then cannot either.

// quotaBuckets is how many records a quota window is counted in: usage is summed per
// window/quotaBuckets (a minute of 24 h), and an upload leaves the window up to that
// much early.
const quotaBuckets = 1440

// quotaError refuses an upload over the user's quota (429).
type quotaError struct {
	msg   string
	retry time.Duration // when enough of the window has passed; 0 if unknown
}

func (e *quotaError) Error() string { return e.msg }

// lowDiskError refuses an upload while the disk is short of space (507).
type lowDiskError struct{ free, held, min, size int64 }

func (e *lowDiskError) Error() string {
	return fmt.Sprintf("media: %s free on the media disk and %s held by uploads in flight; uploads keep %s free beyond their size (%s)",
		humanSize(e.free), humanSize(e.held), humanSize(e.min), humanSize(e.size))
}

// freeBytes is avail blocks of bsize bytes, at most math.MaxInt64; nonsense counts are none.
func freeBytes(avail, bsize int64) int64 {
	if avail < 1 || bsize < 1 {
		return 0
	}
	if avail > math.MaxInt64/bsize {
		return math.MaxInt64
	}
	return avail * bsize
}

// diskFree is the free space of Dir's file system, or of BlobsDir's when that has less.
func (s *Service) diskFree() (int64, error) {
	free, err := DiskFree(s.Dir)
	if err != nil || s.BlobsDir == "" {
		return free, err
	}
	other, err := DiskFree(s.BlobsDir)
	return min(free, other), err
}

// hold is one upload's reservation.
type hold struct {
	uid string
	n   int64

	shared time.Time // with Blobs: the store record counting n since settle, zero if none
	done   bool      // recorded: the upload was accepted
}

func (s *Service) quota() Quota { return s.Quota.withDefaults() }

// minFreeDisk is the free space uploads must leave, 0 for none.
func (s *Service) minFreeDisk() int64 {
	if s.MinFreeDisk == 0 {
		return DefaultMinFreeDisk
	}
	return max(s.MinFreeDisk, 0) // negative: no minimum
}

// admit reserves n bytes for an upload by uid of which need are certain: it is
// refused when the disk would keep less than the minimum free, or when need more
// bytes would take the user past the quota.
func (s *Service) admit(uid string, n, need int64) (*hold, error) {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if min := s.minFreeDisk(); min != 0 {
		free, err := s.diskFree()
		if err != nil {
			s.diskWarn.Do(func() {
				slog.Warn("media: free disk space cannot be read; uploads go on without the minimum", "err", err)
			})
		} else if free-s.heldAll < min+n { // other uploads in flight will take their share too
			return nil, &lowDiskError{free: free, held: s.heldAll, min: min, size: n}
		}
	}
	if err := s.checkQuota(uid, need, 0, false); err != nil {
		return nil, err
	}
	h := &hold{uid: uid}
	s.grow(h, n)
	return h, nil
}

// settle turns the reservation into the file's exact size, if the quota allows it.
// On error the reservation is gone.
func (s *Service) settle(h *hold, size int64) error {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	s.grow(h, -h.n)
	if err := s.checkQuota(h.uid, size, 0, true); err != nil {
		return err
	}
	s.grow(h, size)
	if s.Blobs != nil {
		return s.share(h)
	}
	return nil
}

// share counts h in the store, where every node sees it, and refuses it if the
// user's usage there, with this node's other uploads in flight, passes the quota;
// the caller holds qmu. On error the reservation is gone.
func (s *Service) share(h *hold) error {
	q := s.quota()
	if q.Off {
		return nil
	}
	now := s.now()
	at := now.Truncate(bucket(q))
	if err := s.Meta.AddUpload(h.uid, at, h.n, now.Add(-q.Per)); err != nil {
		s.grow(h, -h.n)
		return storageErr("quota", err)
	}
	h.shared = at
	n := h.n
	s.grow(h, -n) // in the records now, not in held
	err := s.checkQuota(h.uid, n, n, true)
	s.grow(h, n)
	if err != nil {
		s.unshare(h)
		s.grow(h, -n)
	}
	return err
}

// unshare takes a shared reservation out of the store again.
func (s *Service) unshare(h *hold) {
	if h.shared.IsZero() {
		return
	}
	if err := s.Meta.AddUpload(h.uid, h.shared, -h.n, time.Time{}); err != nil {
		slog.Error("media: a refused upload stays counted against the quota", "uid", h.uid, "bytes", h.n, "err", err)
	}
	h.shared = time.Time{}
}

// record counts an accepted upload for good; its reservation ends after this,
// so that it is always counted one way or the other.
func (s *Service) record(h *hold) {
	if !h.shared.IsZero() {
		h.done = true // counted at settle
		return
	}
	if q := s.quota(); !q.Off {
		now := s.now()
		if err := s.Meta.AddUpload(h.uid, now.Truncate(bucket(q)), h.n, now.Add(-q.Per)); err != nil {
			slog.Error("media: upload not counted against the quota", "uid", h.uid, "bytes", h.n, "err", err)
		}
	}
}

// release ends a reservation; calling it again does nothing. A shared one of an
// upload that was not accepted leaves the store.
func (s *Service) release(h *hold) {
	s.qmu.Lock()
	if !h.done {
		s.unshare(h)
	}
	s.grow(h, -h.n)
	s.qmu.Unlock()
}

// grow adds d to h and to the totals; the caller holds qmu.
func (s *Service) grow(h *hold, d int64) {
	h.n += d
	s.heldAll += d
	if s.held == nil {
		s.held = map[string]int64{}
	}
	if s.held[h.uid] += d; s.held[h.uid] == 0 {
		delete(s.held, h.uid)
	}
}

func bucket(q Quota) time.Duration { return max(q.Per/quotaBuckets, time.Millisecond) }

// checkQuota refuses n more bytes from uid (the file's size if exact, else the
// least it can be) if they would pass the quota, counting what uid has stored in
// the window, less counted bytes of this file the records already hold, and has
// in flight; the caller holds qmu.
func (s *Service) checkQuota(uid string, n, counted int64, exact bool) error {
	q := s.quota()
	if q.Off {
		return nil
	}
	now := s.now()
	recs, err := s.Meta.Uploads(uid, now.Add(-q.Per))
	if err != nil {
		return storageErr("quota", err)
	}
	var used int64
	for _, r := range recs {
		used += r.Bytes
	}
	used += s.held[uid] - counted
	over := used + n - q.Bytes
	if over <= 0 {
		return nil
	}
	limit := humanSize(q.Bytes) + " per " + shortDuration(q.Per)
	if n > q.Bytes {
		return &quotaError{msg: fmt.Sprintf("upload quota: this file (%s) is larger than the whole quota of %s", humanSize(n), limit)}
	}
	e := &quotaError{msg: fmt.Sprintf("upload quota of %s reached: %s used", limit, humanSize(used))}
	if exact {
		e.msg += ", this file is " + humanSize(n)
	} else if n > 1 {
		e.msg += ", this upload needs at least " + humanSize(n)
	}
	e.retry = retryAfter(recs, over, now, q.Per)
	if e.retry > 0 {
		e.msg += "; try again in " + shortDuration(e.retry)
	} else {
		e.msg += "; try again later"
	}
	return e
}

// retryAfter is how long until records worth over bytes have left the window
// (whole seconds, rounded up), or 0 when the records alone cannot free that much.
func retryAfter(recs []persistence.Upload, over int64, now time.Time, per time.Duration) time.Duration {
	for _, r := range recs {
		if over -= r.Bytes; over <= 0 {
			d := r.At.Add(per).Sub(now)
			return max(d.Truncate(time.Second)+time.Second, time.Second)
		}
	}
	return 0
}
