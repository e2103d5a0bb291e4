package persistence

import (
	"errors"
	"slices"
	"sort"
	"sync"
	"time"
)

// Memory is a Store that keeps everything in process memory: for benchmarks that
// measure the server without disk, and for runs where nothing needs to survive.
type Memory struct {
	mu       sync.RWMutex
	sessions map[string]Session
	users    map[string]User
	openIDs  map[string]string
	rooms    map[string]*memRoom
	media    map[string]Media
	uploads  map[string][]Upload // by uid, oldest first
	tickets  map[string]Ticket
	sweepAt  int                          // len(tickets) at which PutTicket next drops expired ones
	sessAt   int                          // len(sessions) at which a new one next drops expired ones
	reads    map[string]map[string]uint64 // uid → room → read position
}

// memMsg is a stored Message without its Effect (applied when stored).
type memMsg struct {
	ID   uint64
	Data []byte
	CID  string
}

func (m memMsg) message() Message { return Message{ID: m.ID, Data: m.Data, CID: m.CID} }

// messages copies stored messages out.
func messages(ms []memMsg) []Message {
	if len(ms) == 0 {
		return nil
	}
	out := make([]Message, len(ms))
	for i, m := range ms {
		out[i] = m.message()
	}
	return out
}

type memRoom struct {
	last   uint64
	msgs   []memMsg                     // ascending ids
	counts map[uint64][]byte            // message id → reaction counts
	mine   map[uint64]map[string][]byte // message id → uid → its reactions
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	return &Memory{
		sessions: map[string]Session{},
		users:    map[string]User{},
		openIDs:  map[string]string{},
		rooms:    map[string]*memRoom{},
		media:    map[string]Media{},
		uploads:  map[string][]Upload{},
		tickets:  map[string]Ticket{},
		reads:    map[string]map[string]uint64{},
	}
}

func (m *Memory) PutSession(s Session) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.putSession(s)
	return nil
}

func (m *Memory) Session(id string) (Session, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	s, ok := m.sessions[id]
	if !ok || !s.Expires.After(time.Now()) {
		return Session{}, ErrNotFound
	}
	return s, nil
}

func (m *Memory) SessionUser(id string) (Session, User, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	s, ok := m.sessions[id]
	if !ok || !s.Expires.After(time.Now()) {
		return Session{}, User{}, ErrNotFound
	}
	u, ok := m.users[s.UID]
	if !ok {
		return Session{}, User{}, ErrNotFound
	}
	return s, u, nil
}

func (m *Memory) DeleteSession(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.sessions, id)
	return nil
}

func (m *Memory) UserByOpenID(openID string) (User, error) {
	m.mu.RLock()
	uid, ok := m.openIDs[openID]
	m.mu.RUnlock()
	if !ok {
		return User{}, ErrNotFound
	}
	u, err := m.User(uid)
	if err == nil && u.OpenID != openID { // the user moved to another openId since
		return User{}, ErrNotFound
	}
	return u, err
}

func (m *Memory) User(uid string) (User, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	u, ok := m.users[uid]
	if !ok {
		return User{}, ErrNotFound
	}
	return u, nil
}

func (m *Memory) PutUser(u User) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.users[u.UID] = u
	if u.OpenID != "" {
		m.openIDs[u.OpenID] = u.UID
	}
	return nil
}

func (m *Memory) EditUser(uid string, edit func(*User)) (User, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u, ok := m.users[uid]
	if !ok {
		return User{}, ErrNotFound
	}
	edit(&u)
	u.UID = uid
	m.users[uid] = u
	if u.OpenID != "" {
		m.openIDs[u.OpenID] = uid
	}
	return u, nil
}

func (m *Memory) PutLogin(u User, s Session) error {
	if !s.Expires.After(time.Now()) {
		return errors.New("session already expired")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.users[u.UID] = u
	if u.OpenID != "" {
		m.openIDs[u.OpenID] = u.UID
	}
	m.putSession(s)
	return nil
}

// putSession stores s; expired sessions go first once the map has doubled,
// so that it stays as large as the live ones (Badger's expire by TTL).
func (m *Memory) putSession(s Session) {
	if len(m.sessions) >= m.sessAt {
		now := time.Now()
		for id, old := range m.sessions {
			if !old.Expires.IsZero() && !old.Expires.After(now) {
				delete(m.sessions, id)
			}
		}
		m.sessAt = 2*len(m.sessions) + 64
	}
	m.sessions[s.ID] = s
}

func (m *Memory) LoginOpenID(openID string, fresh User, edit func(*User), s Session) (User, Session, error) {
	if openID == "" {
		return User{}, Session{}, errors.New("login without an openId")
	}
	if !s.Expires.After(time.Now()) {
		return User{}, Session{}, errors.New("session already expired")
	}
	m.mu.Lock() // lookup and create under one lock: one openId, one user
	defer m.mu.Unlock()
	uid, bound := m.openIDs[openID]
	u, ok := m.users[uid]
	if !bound || !ok || u.OpenID != openID {
		u = fresh
		u.OpenID = openID
	}
	if edit != nil {
		edit(&u)
	}
	s.UID = u.UID
	m.users[u.UID] = u
	m.openIDs[openID] = u.UID
	m.putSession(s)
	return u, s, nil
}

func (m *Memory) PutTicket(t Ticket) error {
	if !t.Expires.After(time.Now()) {
		return errors.New("ticket already expired")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.tickets) >= m.sweepAt { // unused tickets go, so the map stays as large as the live ones
		now := time.Now()
		for id, old := range m.tickets {
			if !old.Expires.After(now) {
				delete(m.tickets, id)
			}
		}
		m.sweepAt = 2*len(m.tickets) + 64
	}
	m.tickets[t.ID] = t
	return nil
}

func (m *Memory) TakeTicket(id string) (Ticket, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tickets[id]
	delete(m.tickets, id)
	if !ok || !t.Expires.After(time.Now()) {
		return Ticket{}, ErrNotFound
	}
	return t, nil
}

func (m *Memory) AppendMessages(room string, msgs []Message) error {
	if len(msgs) == 0 {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.rooms[room]
	if r == nil {
		r = &memRoom{}
		m.rooms[room] = r
	}
	for _, msg := range msgs {
		if msg.Effect != nil {
			r.apply(msg.Effect)
		}
		r.msgs = append(r.msgs, memMsg{ID: msg.ID, Data: msg.Data, CID: msg.CID})
	}
	r.last = msgs[len(msgs)-1].ID
	return nil
}

func (m *Memory) LastID(room string) (uint64, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if r := m.rooms[room]; r != nil {
		return r.last, nil
	}
	return 0, nil
}

func (m *Memory) MessagesAfter(room string, after uint64, limit int) ([]Message, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	r := m.rooms[room]
	if r == nil || limit <= 0 {
		return nil, nil
	}
	i := sort.Search(len(r.msgs), func(i int) bool { return r.msgs[i].ID > after })
	j := len(r.msgs)
	if limit < j-i { // not i+limit: that overflows for a huge limit
		j = i + limit
	}
	return messages(r.msgs[i:j]), nil
}

func (m *Memory) MessagesBefore(room string, before uint64, limit int) ([]Message, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	r := m.rooms[room]
	if r == nil || limit <= 0 {
		return nil, nil
	}
	j := sort.Search(len(r.msgs), func(i int) bool { return r.msgs[i].ID >= before })
	i := max(j-limit, 0)
	return messages(r.msgs[i:j]), nil
}

func (m *Memory) TrimMessages(room string, keepFrom uint64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.rooms[room]
	if r == nil {
		return 0, nil
	}
	i := sort.Search(len(r.msgs), func(i int) bool { return r.msgs[i].ID >= keepFrom })
	r.msgs = append([]memMsg(nil), r.msgs[i:]...)
	for id := range r.counts {
		if id < keepFrom {
			delete(r.counts, id)
		}
	}
	for id := range r.mine {
		if id < keepFrom {
			delete(r.mine, id)
		}
	}
	return i, nil
}

func (m *Memory) PutMedia(md Media) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.media[md.ID] = md
	return nil
}

func (m *Memory) Media(id string) (Media, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	md, ok := m.media[id]
	if !ok {
		return Media{}, ErrNotFound
	}
	return md, nil
}

func (m *Memory) AddUpload(uid string, at time.Time, n int64, forget time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	at = time.Unix(0, unixNano(at)).UTC() // what Badger keeps of it
	us := m.uploads[uid]
	i := sort.Search(len(us), func(i int) bool { return !us[i].At.Before(forget) })
	us = append([]Upload(nil), us[i:]...)
	j := sort.Search(len(us), func(j int) bool { return !us[j].At.Before(at) })
	if j < len(us) && us[j].At.Equal(at) {
		us[j].Bytes += n
	} else {
		us = slices.Insert(us, j, Upload{At: at, Bytes: n})
	}
	m.uploads[uid] = us
	return nil
}

func (m *Memory) Uploads(uid string, since time.Time) ([]Upload, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	us := m.uploads[uid]
	i := sort.Search(len(us), func(i int) bool { return !us[i].At.Before(since) })
	if i == len(us) {
		return nil, nil
	}
	return append([]Upload(nil), us[i:]...), nil
}

func (m *Memory) Sync() error  { return nil }
func (m *Memory) Close() error { return nil }
