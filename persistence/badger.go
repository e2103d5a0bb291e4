package persistence

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// Options tune the Badger store. The zero value is a good default.
type Options struct {
	// SyncWrites fsyncs every transaction: survives power loss, costs a disk flush per batch.
	// Without it a write survives a process crash (kill -9) but not a power cut.
	SyncWrites bool
	// Logger receives Badger's own messages (warnings and errors only); nil discards them.
	Logger *slog.Logger
	// GroupWait spaces the group commits of messages when rooms write often
	// (three batches or more per GroupWait): a batch that arrives less than
	// GroupWait after the last group began waits for the rest of it, so one
	// transaction carries the batches of many rooms. A store written less often
	// commits at once. 0 means 1ms; negative never waits.
	GroupWait time.Duration
}

// Badger is the Store on an embedded Badger database.
type Badger struct {
	db   *badger.DB
	stop chan struct{}
	wg   sync.WaitGroup

	mu    sync.Mutex
	first map[string]uint64 // room → lowest id still stored, once known

	commits committer // group commit of room batches

	// rmw serialises the read-then-write transactions (logins by openId, ticket
	// takes). Conflict detection is off (the hot paths have one writer per key)
	// and the directory lock makes this process the store's only writer, so
	// holding rmw around the transaction is what makes each of them atomic.
	rmw sync.Mutex

	uploadMu sync.Mutex // AddUpload reads, then writes one key: held around its transaction
	readMu   sync.Mutex // MarkRead reads, then writes: held around its transaction
}

var _ Store = (*Badger)(nil)

// valueThreshold: values longer than this (message bodies) go to the value
// log, written once; the LSM tree keeps their keys and pointers, so a memtable
// flush and the compactions after it move a sixth of the bytes (250 B bodies).
// Inline, they took both cores for a moment at every 16 MB flush under load.
const valueThreshold = 64

// Sizes of a memtable and of a value-log file (the unit that the value-log GC
// frees); variables, so that tests can make them small.
var (
	memTableSize     int64 = 16 << 20
	valueLogFileSize int64 = 64 << 20
)

// OpenBadger opens (creating if needed) the store in dir. A missing permission, a file in
// the way or another process holding the directory is an error, never a panic.
func OpenBadger(dir string, o Options) (s *Badger, err error) {
	if err := usableDir(dir); err != nil {
		return nil, err
	}
	opts := badger.DefaultOptions(dir).
		WithLogger(badgerLogger{o.Logger}).
		WithSyncWrites(o.SyncWrites).
		// Memory over raw speed: chat values are small and the server holds many sockets.
		WithMemTableSize(memTableSize).         // default 64 MB
		WithNumMemtables(2).                    // default 5
		WithNumLevelZeroTables(2).              // flush L0 early so memtables stay few
		WithNumLevelZeroTablesStall(8).         //
		WithValueLogFileSize(valueLogFileSize). // default 1 GB files, mmapped
		WithCompression(options.None).          // chat JSON compresses little ...
		WithBlockCacheSize(0).                  // ... so no block cache is needed
		WithIndexCacheSize(16 << 20).           // cap table indices + bloom filters (default: unbounded)
		WithNumCompactors(2).                   // 1 is rejected; 2 is enough on small machines
		WithDetectConflicts(false).             // each key has a single writer (room actor, session owner)
		WithNumVersionsToKeep(1).               //
		WithValueThreshold(valueThreshold)
	defer func() {
		if r := recover(); r != nil { // Badger panics on a few corrupt-directory cases
			s, err = nil, fmt.Errorf("open store in %s: %v", dir, r)
		}
	}()
	db, err := badger.Open(opts)
	if err != nil {
		if strings.Contains(err.Error(), "Cannot acquire directory lock") {
			return nil, fmt.Errorf("data directory %s is in use by another process", dir)
		}
		return nil, fmt.Errorf("open store in %s: %w", dir, err)
	}
	s = &Badger{db: db, stop: make(chan struct{}), first: map[string]uint64{}}
	s.commits.kick = make(chan struct{}, 1)
	s.commits.wait = o.GroupWait
	if s.commits.wait == 0 {
		s.commits.wait = time.Millisecond
	}
	s.wg.Add(2)
	go s.gcLoop()
	go s.commitLoop()
	return s, nil
}

// usableDir creates dir and proves it is a writable directory.
func usableDir(dir string) error {
	if dir == "" {
		return errors.New("no data directory given")
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("data directory %s: %w", dir, unwrapPath(err))
	}
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return fmt.Errorf("data directory %s is not writable: %w", dir, unwrapPath(err))
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// gcLoop frees value-log space every gcEvery: message bodies live there.
func (s *Badger) gcLoop() {
	defer s.wg.Done()
	t := time.NewTicker(gcEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.collect()
		}
	}
}

// gcEvery is how often the value-log GC looks for files that are mostly
// deleted messages; a look that finds none costs next to nothing.
const gcEvery = time.Minute

// collect frees the value-log files that are mostly deleted messages.
func (s *Badger) collect() {
	for s.db.RunValueLogGC(0.5) == nil {
	}
}

func (s *Badger) getJSON(key []byte, v any) error {
	return s.db.View(func(txn *badger.Txn) error { return txnJSON(txn, key, v) })
}

// txnJSON decodes the value at key, or returns ErrNotFound.
func txnJSON(txn *badger.Txn, key []byte, v any) error {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	return item.Value(func(b []byte) error { return json.Unmarshal(b, v) })
}

func (s *Badger) PutSession(sess Session) error {
	if !sess.Expires.After(time.Now()) { // stored until the past: nothing left to keep
		return s.DeleteSession(sess.ID)
	}
	e, err := sessionEntry(sess)
	if err != nil {
		return err
	}
	return s.db.Update(func(txn *badger.Txn) error { return txn.SetEntry(e) })
}

// sessionEntry is a session's key and value with its Badger expiry.
func sessionEntry(sess Session) (*badger.Entry, error) {
	b, err := json.Marshal(sess)
	if err != nil {
		return nil, err
	}
	// Badger expires keys at whole unix seconds; round up so the key outlives
	// sess.Expires (Session checks Expires itself) instead of vanishing up to 1 s early.
	e := badger.NewEntry(sessionKey(sess.ID), b)
	e.ExpiresAt = uint64(sess.Expires.Unix())
	if sess.Expires.Nanosecond() > 0 {
		e.ExpiresAt++
	}
	return e, nil
}

// PutLogin stores a user and its new session in one transaction.
func (s *Badger) PutLogin(u User, sess Session) error {
	if !sess.Expires.After(time.Now()) {
		return errors.New("session already expired")
	}
	e, err := sessionEntry(sess)
	if err != nil {
		return err
	}
	b, err := json.Marshal(u)
	if err != nil {
		return err
	}
	return s.db.Update(func(txn *badger.Txn) error {
		if err := setUser(txn, u, b); err != nil {
			return err
		}
		return txn.SetEntry(e)
	})
}

// LoginOpenID looks up or creates the openId's user and stores it with the
// new session, all in one transaction under rmw.
func (s *Badger) LoginOpenID(openID string, fresh User, edit func(*User), sess Session) (User, Session, error) {
	if openID == "" {
		return User{}, Session{}, errors.New("login without an openId")
	}
	if !sess.Expires.After(time.Now()) {
		return User{}, Session{}, errors.New("session already expired")
	}
	s.rmw.Lock()
	defer s.rmw.Unlock()
	var u User
	err := retryConflict(func() error {
		return s.db.Update(func(txn *badger.Txn) error {
			var err error
			u, err = txnUserByOpenID(txn, openID)
			if errors.Is(err, ErrNotFound) {
				u, err = fresh, nil
				u.OpenID = openID
			}
			if err != nil {
				return err
			}
			if edit != nil {
				edit(&u)
			}
			sess.UID = u.UID
			e, err := sessionEntry(sess)
			if err != nil {
				return err
			}
			b, err := json.Marshal(u)
			if err != nil {
				return err
			}
			if err := setUser(txn, u, b); err != nil {
				return err
			}
			return txn.SetEntry(e)
		})
	})
	if err != nil {
		return User{}, Session{}, err
	}
	return u, sess, nil
}

// txnUserByOpenID reads the openId's binding and its user in txn.
func txnUserByOpenID(txn *badger.Txn, openID string) (User, error) {
	item, err := txn.Get(openIDKey(openID))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return User{}, ErrNotFound
	}
	if err != nil {
		return User{}, err
	}
	uid, err := item.ValueCopy(nil)
	if err != nil {
		return User{}, err
	}
	var u User
	if err := txnJSON(txn, userKey(string(uid)), &u); err != nil {
		return User{}, err
	}
	if u.OpenID != openID { // the user moved to another openId since
		return User{}, ErrNotFound
	}
	return u, nil
}

// retryConflict runs a read-then-write transaction again when Badger reports
// a conflict (only possible with conflict detection on; rmw prevents them here).
func retryConflict(f func() error) error {
	for i := 0; ; i++ {
		err := f()
		if !errors.Is(err, badger.ErrConflict) || i == 9 {
			return err
		}
	}
}

// PutTicket stores t with a Badger TTL, so unused tickets vanish by themselves.
func (s *Badger) PutTicket(t Ticket) error {
	if !t.Expires.After(time.Now()) {
		return errors.New("ticket already expired")
	}
	b, err := json.Marshal(t)
	if err != nil {
		return err
	}
	e := badger.NewEntry(ticketKey(t.ID), b)
	e.ExpiresAt = uint64(t.Expires.Unix()) // whole seconds, rounded up: TakeTicket checks Expires itself
	if t.Expires.Nanosecond() > 0 {
		e.ExpiresAt++
	}
	return s.db.Update(func(txn *badger.Txn) error { return txn.SetEntry(e) })
}

// TakeTicket reads and deletes the ticket in one transaction under rmw.
func (s *Badger) TakeTicket(id string) (Ticket, error) {
	if id == "" {
		return Ticket{}, ErrNotFound
	}
	s.rmw.Lock()
	defer s.rmw.Unlock()
	var t Ticket
	err := retryConflict(func() error {
		return s.db.Update(func(txn *badger.Txn) error {
			if err := txnJSON(txn, ticketKey(id), &t); err != nil {
				return err
			}
			return txn.Delete(ticketKey(id))
		})
	})
	if err != nil {
		return Ticket{}, err
	}
	if !t.Expires.After(time.Now()) {
		return Ticket{}, ErrNotFound
	}
	return t, nil
}

func (s *Badger) Session(id string) (Session, error) {
	var sess Session
	if err := s.getJSON(sessionKey(id), &sess); err != nil {
		return Session{}, err
	}
	if !sess.Expires.After(time.Now()) {
		return Session{}, ErrNotFound
	}
	return sess, nil
}

func (s *Badger) SessionUser(id string) (Session, User, error) {
	var (
		sess Session
		u    User
	)
	err := s.db.View(func(txn *badger.Txn) error {
		if err := txnJSON(txn, sessionKey(id), &sess); err != nil {
			return err
		}
		if !sess.Expires.After(time.Now()) {
			return ErrNotFound
		}
		return txnJSON(txn, userKey(sess.UID), &u)
	})
	if err != nil {
		return Session{}, User{}, err
	}
	return sess, u, nil
}

func (s *Badger) DeleteSession(id string) error {
	return s.db.Update(func(txn *badger.Txn) error { return txn.Delete(sessionKey(id)) })
}

func (s *Badger) UserByOpenID(openID string) (User, error) {
	var uid string
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(openIDKey(openID))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		b, err := item.ValueCopy(nil)
		uid = string(b)
		return err
	})
	if err != nil {
		return User{}, err
	}
	u, err := s.User(uid)
	if err == nil && u.OpenID != openID { // the user moved to another openId since
		return User{}, ErrNotFound
	}
	return u, err
}

func (s *Badger) User(uid string) (User, error) {
	var u User
	err := s.getJSON(userKey(uid), &u)
	return u, err
}

func (s *Badger) PutUser(u User) error {
	b, err := json.Marshal(u)
	if err != nil {
		return err
	}
	return s.db.Update(func(txn *badger.Txn) error { return setUser(txn, u, b) })
}

// EditUser reads and writes the user in one transaction under rmw, the lock
// logins hold around theirs.
func (s *Badger) EditUser(uid string, edit func(*User)) (User, error) {
	s.rmw.Lock()
	defer s.rmw.Unlock()
	var u User
	err := s.db.Update(func(txn *badger.Txn) error {
		u = User{}
		if err := txnJSON(txn, userKey(uid), &u); err != nil {
			return err
		}
		edit(&u)
		u.UID = uid
		b, err := json.Marshal(u)
		if err != nil {
			return err
		}
		return setUser(txn, u, b)
	})
	return u, err
}

// setUser writes a user (encoded as b) and its openId binding.
func setUser(txn *badger.Txn, u User, b []byte) error {
	if u.OpenID != "" {
		if err := txn.Set(openIDKey(u.OpenID), []byte(u.UID)); err != nil {
			return err
		}
	}
	return txn.Set(userKey(u.UID), b)
}

// appendSplit stores a batch too big for one transaction: what fits, in
// order, commit by commit; a failure leaves a stored prefix (LastID tells).
func (s *Badger) appendSplit(room string, msgs []Message) error {
	if len(msgs) == 0 {
		return nil
	}
	txn := s.db.NewTransaction(true)
	defer txn.Discard()
	for i, m := range msgs {
		if m.Effect != nil && i > 0 { // an event and its effect go in a transaction of their own
			if err := s.commitLast(txn, room, msgs[i-1].ID); err != nil {
				return err
			}
			txn = s.db.NewTransaction(true)
			defer txn.Discard()
		}
		err := writeMessage(txn, room, m)
		if errors.Is(err, badger.ErrTxnTooBig) && i > 0 && m.Effect == nil { // commit what fits, in order, then go on
			if err := s.commitLast(txn, room, msgs[i-1].ID); err != nil {
				return err
			}
			txn = s.db.NewTransaction(true)
			defer txn.Discard()
			err = writeMessage(txn, room, m)
		}
		if err != nil {
			return err
		}
		if m.Effect != nil && i < len(msgs)-1 {
			if err := s.commitLast(txn, room, m.ID); err != nil {
				return err
			}
			txn = s.db.NewTransaction(true)
			defer txn.Discard()
		}
	}
	return s.commitLast(txn, room, msgs[len(msgs)-1].ID)
}

// commitLast commits a part of a split batch. A room's last id is its highest
// message key: no key of its own is written per batch.
func (s *Badger) commitLast(txn *badger.Txn, _ string, _ uint64) error {
	return txn.Commit()
}

// LastID is the room's highest message id. Retention always keeps the newest
// message, so the highest key is the last id ever stored; stores written
// before messages were the only record also have r/<room>, and the higher wins.
func (s *Badger) LastID(room string) (uint64, error) {
	var id uint64
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		id, err = txnLastID(txn, room)
		return err
	})
	return id, err
}

func txnLastID(txn *badger.Txn, room string) (uint64, error) {
	var id uint64
	prefix := messagePrefix(room)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, Reverse: true})
	if it.Seek(messageKey(room, math.MaxUint64)); it.ValidForPrefix(prefix) {
		id = idOf(it.Item().Key())
	}
	it.Close()
	item, err := txn.Get(roomKey(room))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return id, nil
	}
	if err != nil {
		return 0, err
	}
	err = item.Value(func(b []byte) error {
		if len(b) != 8 {
			return fmt.Errorf("room %s: corrupt last id", room)
		}
		id = max(id, binary.BigEndian.Uint64(b))
		return nil
	})
	return id, err
}

func (s *Badger) MessagesAfter(room string, after uint64, limit int) ([]Message, error) {
	if limit <= 0 || after == math.MaxUint64 { // after+1 would wrap to the first message
		return nil, nil
	}
	var out []Message
	err := s.db.View(func(txn *badger.Txn) error {
		prefix := messagePrefix(room)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: min(limit, 100)})
		defer it.Close()
		for it.Seek(messageKey(room, after+1)); it.ValidForPrefix(prefix) && len(out) < limit; it.Next() {
			m, err := readMessage(it.Item())
			if err != nil {
				return err
			}
			out = append(out, m)
		}
		return nil
	})
	return out, err
}

func (s *Badger) MessagesBefore(room string, before uint64, limit int) ([]Message, error) {
	if before <= 1 || limit <= 0 {
		return nil, nil
	}
	var out []Message
	err := s.db.View(func(txn *badger.Txn) error {
		prefix := messagePrefix(room)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, Reverse: true, PrefetchValues: true, PrefetchSize: min(limit, 100)})
		defer it.Close()
		for it.Seek(messageKey(room, before-1)); it.ValidForPrefix(prefix) && len(out) < limit; it.Next() {
			m, err := readMessage(it.Item())
			if err != nil {
				return err
			}
			out = append(out, m)
		}
		return nil
	})
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 { // oldest first
		out[i], out[j] = out[j], out[i]
	}
	return out, err
}

// messageValue is the JSON object, then a NUL and the cid when there is one:
// JSON text never holds a raw NUL, and values without one read as before.
func messageValue(m Message) []byte {
	if m.CID == "" {
		return m.Data
	}
	v := make([]byte, 0, len(m.Data)+1+len(m.CID))
	v = append(v, m.Data...)
	v = append(v, 0)
	return append(v, m.CID...)
}

func readMessage(item *badger.Item) (Message, error) {
	b, err := item.ValueCopy(nil)
	m := Message{ID: idOf(item.Key()), Data: b}
	if i := bytes.IndexByte(b, 0); i >= 0 {
		m.Data, m.CID = b[:i:i], string(b[i+1:])
	}
	return m, err
}

// TrimMessages deletes ids [first live, keepFrom). A room's ids are contiguous,
// so after the first trim no key needs to be read: the store remembers where
// each room's history now starts, and a scan over old tombstones is avoided.
func (s *Badger) TrimMessages(room string, keepFrom uint64) (int, error) {
	first, err := s.firstLive(room)
	if err != nil {
		return 0, err
	}
	last, err := s.LastID(room)
	if err != nil {
		return 0, err
	}
	end := min(keepFrom, last+1)
	if first >= end {
		return 0, nil
	}
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for id := first; id < end; id++ {
		if err := wb.Delete(messageKey(room, id)); err != nil {
			return 0, err
		}
	}
	if end == last+1 { // the last message goes too: keep its id, ids are never reused
		if err := wb.Set(roomKey(room), binary.BigEndian.AppendUint64(nil, last)); err != nil {
			return 0, err
		}
	}
	if err := s.trimReactions(wb, room, end); err != nil {
		return 0, err
	}
	if err := wb.Flush(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	s.first[room] = end
	s.mu.Unlock()
	return int(end - first), nil
}

// firstLive is the lowest stored id of room (last+1 when empty), from memory
// after the first look.
func (s *Badger) firstLive(room string) (uint64, error) {
	s.mu.Lock()
	id, ok := s.first[room]
	s.mu.Unlock()
	if ok {
		return id, nil
	}
	err := s.db.View(func(txn *badger.Txn) error {
		prefix := messagePrefix(room)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		it.Rewind()
		if it.ValidForPrefix(prefix) {
			id = idOf(it.Item().Key())
			return nil
		}
		last, err := s.LastID(room)
		id = last + 1
		return err
	})
	return id, err
}

func (s *Badger) PutMedia(m Media) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return s.db.Update(func(txn *badger.Txn) error { return txn.Set(mediaKey(m.ID), b) })
}

func (s *Badger) Media(id string) (Media, error) {
	var m Media
	err := s.getJSON(mediaKey(id), &m)
	return m, err
}

func (s *Badger) AddUpload(uid string, at time.Time, n int64, forget time.Time) error {
	s.uploadMu.Lock()
	defer s.uploadMu.Unlock()
	return s.db.Update(func(txn *badger.Txn) error {
		prefix := uploadPrefix(uid)
		var stale [][]byte
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		for it.Rewind(); it.ValidForPrefix(prefix); it.Next() {
			k := it.Item().Key()
			if len(k) != len(prefix)+8 { // a longer uid that starts with this one and '/'
				continue
			}
			if !uploadTime(k).Before(forget) {
				break
			}
			stale = append(stale, it.Item().KeyCopy(nil))
		}
		it.Close()
		for _, k := range stale {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		key := uploadKey(uid, at)
		var sum int64
		item, err := txn.Get(key)
		switch {
		case err == nil:
			if sum, err = uploadBytes(item); err != nil {
				return err
			}
		case !errors.Is(err, badger.ErrKeyNotFound):
			return err
		}
		return txn.Set(key, binary.BigEndian.AppendUint64(nil, uint64(sum+n)))
	})
}

func (s *Badger) Uploads(uid string, since time.Time) ([]Upload, error) {
	var out []Upload
	err := s.db.View(func(txn *badger.Txn) error {
		prefix := uploadPrefix(uid)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true})
		defer it.Close()
		for it.Seek(uploadKey(uid, since)); it.ValidForPrefix(prefix); it.Next() {
			k := it.Item().Key()
			if len(k) != len(prefix)+8 {
				continue
			}
			n, err := uploadBytes(it.Item())
			if err != nil {
				return err
			}
			out = append(out, Upload{At: uploadTime(k), Bytes: n})
		}
		return nil
	})
	return out, err
}

func uploadBytes(item *badger.Item) (n int64, err error) {
	err = item.Value(func(b []byte) error {
		if len(b) != 8 {
			return fmt.Errorf("corrupt upload record %q", item.Key())
		}
		n = int64(binary.BigEndian.Uint64(b))
		return nil
	})
	return n, err
}

func (s *Badger) Sync() error { return s.db.Sync() }

// Close flushes and closes the database; safe to call once.
func (s *Badger) Close() error {
	close(s.stop)
	s.wg.Wait()
	return s.db.Close()
}

// DB exposes the database for backup and restore.
func (s *Badger) DB() *badger.DB { return s.db }

// badgerLogger forwards Badger's warnings and errors to slog; its info chatter is dropped.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any) {
	if b.l != nil {
		b.l.Error(strings.TrimSpace(fmt.Sprintf(f, a...)), "lib", "badger")
	}
}
func (b badgerLogger) Warningf(f string, a ...any) {
	if b.l != nil {
		b.l.Warn(strings.TrimSpace(fmt.Sprintf(f, a...)), "lib", "badger")
	}
}
func (badgerLogger) Infof(string, ...any)  {}
func (badgerLogger) Debugf(string, ...any) {}
