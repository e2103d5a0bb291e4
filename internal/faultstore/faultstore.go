// Package faultstore wraps a persistence.Store and injects faults on command:
// failed writes, half-stored batches, writes that fail after they were stored,
// stalls, panics and failed reads. It is for tests that run the real server over
// a real store and check what clients see when the store misbehaves.
//
// Faults are armed by the test and consumed by the calls that meet them; every
// method is safe for concurrent use.
package faultstore

import (
	"errors"
	"fmt"
	"sync"

	"github.com/pandachat/pandachat/persistence"
)

// ErrInjected is the error every injected failure returns (wrapped with the method's name).
var ErrInjected = errors.New("faultstore: injected failure")

// Method names, for PanicOn, Calls and the Stalled channel.
const (
	AppendMessages = "AppendMessages"
	LastID         = "LastID"
	MessagesAfter  = "MessagesAfter"
	MessagesBefore = "MessagesBefore"
	TrimMessages   = "TrimMessages"
	PutSession     = "PutSession"
	Session        = "Session"
	DeleteSession  = "DeleteSession"
	SessionUser    = "SessionUser"
	UserByOpenID   = "UserByOpenID"
	User           = "User"
	PutUser        = "PutUser"
	EditUser       = "EditUser"
	PutLogin       = "PutLogin"
	PutMedia       = "PutMedia"
	Media          = "Media"
	Sync           = "Sync"
	Close          = "Close"
)

// Always, given as a count, arms a fault until Clear.
const Always = -1

// Store is a persistence.Store with faults on command. The embedded store
// answers every method this type does not override, so methods added to the
// interface later pass straight through.
type Store struct {
	persistence.Store

	mu          sync.Mutex
	failWrites  int // AppendMessages calls left to fail, storing nothing; Always: all
	halfCommit  int // >0: the next AppendMessages stores only this many messages, then fails
	afterCommit int // AppendMessages calls left to store everything and then fail; Always: all
	failReads   int // MessagesAfter/LastID calls left to fail; Always: all
	panics      map[string]int
	stallWrites bool
	stallReads  bool
	release     chan struct{} // closed by Release: stalled calls go on
	stalled     chan string   // a method name for each call that blocks
	calls       map[string]int
	injected    int
}

// New wraps inner; no fault is armed.
func New(inner persistence.Store) *Store {
	return &Store{
		Store:   inner,
		panics:  map[string]int{},
		calls:   map[string]int{},
		release: make(chan struct{}),
		stalled: make(chan string, 1024),
	}
}

var _ persistence.Store = (*Store)(nil)

// FailWrites makes the next n AppendMessages calls store nothing and fail
// (Always: every call until Clear). It replaces any count armed before.
func (s *Store) FailWrites(n int) {
	s.mu.Lock()
	s.failWrites = n
	s.mu.Unlock()
}

// HalfCommit makes the next AppendMessages store only the first k messages of its
// batch (as one call to the inner store with that prefix) and then fail, as a
// batch split over several transactions does when a later one fails. A batch of
// k messages or fewer is stored whole and the call still fails; k ≤ 0 disarms it.
func (s *Store) HalfCommit(k int) {
	s.mu.Lock()
	s.halfCommit = max(k, 0)
	s.mu.Unlock()
}

// FailAfterCommit makes the next n AppendMessages calls store their whole batch
// and then fail (Always: every call until Clear), as an fsync failure does under
// --sync: the rows are visible, the writer is told they are not safe.
func (s *Store) FailAfterCommit(n int) {
	s.mu.Lock()
	s.afterCommit = n
	s.mu.Unlock()
}

// FailReads makes the next n MessagesAfter or LastID calls fail (Always: every
// call until Clear).
func (s *Store) FailReads(n int) {
	s.mu.Lock()
	s.failReads = n
	s.mu.Unlock()
}

// PanicOn makes the next call of method panic in its caller's goroutine.
// Armed twice, it panics twice.
func (s *Store) PanicOn(method string) {
	s.mu.Lock()
	s.panics[method]++
	s.mu.Unlock()
}

// StallWrites makes every AppendMessages block until Release.
func (s *Store) StallWrites() {
	s.mu.Lock()
	s.stallWrites = true
	s.mu.Unlock()
}

// StallReads makes every MessagesAfter and LastID block until Release.
func (s *Store) StallReads() {
	s.mu.Lock()
	s.stallReads = true
	s.mu.Unlock()
}

// Stalled receives the method name of each call that blocks on a stall (it holds
// up to 1024 names; further notices are dropped, never the call).
func (s *Store) Stalled() <-chan string { return s.stalled }

// Release ends the stalls: the blocked calls go on (and meet whatever other fault
// is armed), and later calls no longer block.
func (s *Store) Release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stallWrites || s.stallReads {
		s.stallWrites, s.stallReads = false, false
		close(s.release)
		s.release = make(chan struct{})
	}
}

// Clear disarms every fault and releases every stalled call.
func (s *Store) Clear() {
	s.mu.Lock()
	s.failWrites, s.halfCommit, s.afterCommit, s.failReads = 0, 0, 0, 0
	clear(s.panics)
	s.mu.Unlock()
	s.Release()
}

// Calls is how many times method was called (calls that panicked or failed included).
func (s *Store) Calls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[method]
}

// Injected is how many faults were injected so far (failures, half and after
// commits, panics; stalls are not counted).
func (s *Store) Injected() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.injected
}

// What a call may stall on.
const (
	noStall = iota
	writeStall
	readStall
)

// enter counts a call, panics when a panic is armed for method, and blocks while
// a stall of its kind is on.
func (s *Store) enter(method string, kind int) {
	s.mu.Lock()
	s.calls[method]++
	if s.panics[method] > 0 {
		s.panics[method]--
		s.injected++
		s.mu.Unlock()
		panic(fmt.Sprintf("faultstore: injected panic in %s", method))
	}
	var wait <-chan struct{}
	if kind == writeStall && s.stallWrites || kind == readStall && s.stallReads {
		wait = s.release // taken under the lock: a Release after this point frees us
	}
	s.mu.Unlock()
	if wait == nil {
		return
	}
	select {
	case s.stalled <- method:
	default:
	}
	<-wait
}

// take consumes one unit of a count (Always is never used up) and tells whether
// the fault applies. Call with mu held.
func take(n *int) bool {
	switch {
	case *n == Always:
		return true
	case *n > 0:
		*n--
		return true
	}
	return false
}

func injected(method string) error { return fmt.Errorf("%s: %w", method, ErrInjected) }

// AppendMessages applies, in this order: panic, stall, failure, half commit,
// failure after commit.
func (s *Store) AppendMessages(room string, msgs []persistence.Message) error {
	s.enter(AppendMessages, writeStall)
	s.mu.Lock()
	fail := take(&s.failWrites)
	half := 0
	if !fail && s.halfCommit > 0 {
		half, s.halfCommit = s.halfCommit, 0
	}
	after := !fail && half == 0 && take(&s.afterCommit)
	if fail || half > 0 || after {
		s.injected++
	}
	s.mu.Unlock()
	switch {
	case fail:
		return injected(AppendMessages)
	case half > 0:
		if err := s.Store.AppendMessages(room, msgs[:min(half, len(msgs))]); err != nil {
			return err
		}
		return fmt.Errorf("%s: %w after storing %d of %d messages", AppendMessages, ErrInjected, min(half, len(msgs)), len(msgs))
	case after:
		if err := s.Store.AppendMessages(room, msgs); err != nil {
			return err
		}
		return fmt.Errorf("%s: %w after storing the batch", AppendMessages, ErrInjected)
	}
	return s.Store.AppendMessages(room, msgs)
}

// read is the common path of the reads that can stall and fail.
func (s *Store) read(method string) error {
	s.enter(method, readStall)
	s.mu.Lock()
	defer s.mu.Unlock()
	if take(&s.failReads) {
		s.injected++
		return injected(method)
	}
	return nil
}

// LastID can panic, stall and fail.
func (s *Store) LastID(room string) (uint64, error) {
	if err := s.read(LastID); err != nil {
		return 0, err
	}
	return s.Store.LastID(room)
}

// MessagesAfter can panic, stall and fail.
func (s *Store) MessagesAfter(room string, after uint64, limit int) ([]persistence.Message, error) {
	if err := s.read(MessagesAfter); err != nil {
		return nil, err
	}
	return s.Store.MessagesAfter(room, after, limit)
}

// The other methods are counted and can panic; nothing else is injected into them.

func (s *Store) MessagesBefore(room string, before uint64, limit int) ([]persistence.Message, error) {
	s.enter(MessagesBefore, noStall)
	return s.Store.MessagesBefore(room, before, limit)
}

func (s *Store) TrimMessages(room string, keepFrom uint64) (int, error) {
	s.enter(TrimMessages, noStall)
	return s.Store.TrimMessages(room, keepFrom)
}

func (s *Store) PutSession(sess persistence.Session) error {
	s.enter(PutSession, noStall)
	return s.Store.PutSession(sess)
}

func (s *Store) Session(id string) (persistence.Session, error) {
	s.enter(Session, noStall)
	return s.Store.Session(id)
}

func (s *Store) DeleteSession(id string) error {
	s.enter(DeleteSession, noStall)
	return s.Store.DeleteSession(id)
}

func (s *Store) SessionUser(id string) (persistence.Session, persistence.User, error) {
	s.enter(SessionUser, noStall)
	return s.Store.SessionUser(id)
}

func (s *Store) UserByOpenID(openID string) (persistence.User, error) {
	s.enter(UserByOpenID, noStall)
	return s.Store.UserByOpenID(openID)
}

func (s *Store) User(uid string) (persistence.User, error) {
	s.enter(User, noStall)
	return s.Store.User(uid)
}

func (s *Store) PutUser(u persistence.User) error {
	s.enter(PutUser, noStall)
	return s.Store.PutUser(u)
}

func (s *Store) EditUser(uid string, edit func(*persistence.User)) (persistence.User, error) {
	s.enter(EditUser, noStall)
	return s.Store.EditUser(uid, edit)
}

func (s *Store) PutLogin(u persistence.User, sess persistence.Session) error {
	s.enter(PutLogin, noStall)
	return s.Store.PutLogin(u, sess)
}

func (s *Store) PutMedia(m persistence.Media) error {
	s.enter(PutMedia, noStall)
	return s.Store.PutMedia(m)
}

func (s *Store) Media(id string) (persistence.Media, error) {
	s.enter(Media, noStall)
	return s.Store.Media(id)
}

func (s *Store) Sync() error {
	s.enter(Sync, noStall)
	return s.Store.Sync()
}

// Close disarms every fault and releases stalled calls first, so that a store
// being closed never keeps a caller blocked.
func (s *Store) Close() error {
	s.Clear()
	s.mu.Lock()
	s.calls[Close]++
	s.mu.Unlock()
	return s.Store.Close()
}
