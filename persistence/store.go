// Package persistence keeps sessions, users, media metadata and room history.
// It is the only package that knows Badger.
package persistence

import (
	"errors"
	"time"
)

// ErrNotFound is returned when a key does not exist (or has expired).
var ErrNotFound = errors.New("persistence: not found")

// ErrUnsupported is returned by the methods a store does not implement yet.
var ErrUnsupported = errors.New("persistence: not supported by this store")

// Store is everything the server keeps across restarts.
type Store interface {
	// PutSession stores s until s.Expires.
	PutSession(s Session) error
	// Session returns an unexpired session or ErrNotFound.
	Session(id string) (Session, error)
	DeleteSession(id string) error
	// SessionUser returns an unexpired session and its user in one read, or ErrNotFound.
	SessionUser(id string) (Session, User, error)

	// UserByOpenID returns the user bound to a WeChat openId or ErrNotFound.
	UserByOpenID(openID string) (User, error)
	// User returns the user with this public id or ErrNotFound.
	User(uid string) (User, error)
	// PutUser creates or replaces a user (and its openId binding, if any).
	PutUser(u User) error
	// EditUser changes the stored user uid through edit in one atomic step
	// (ErrNotFound if there is none), so that a change made meanwhile (a
	// login's profile or unionId) is kept; edit may run more than once.
	EditUser(uid string, edit func(*User)) (User, error)
	// PutLogin stores a user and a new session of it in one transaction.
	PutLogin(u User, s Session) error
	// LoginOpenID stores a WeChat login in one atomic step: the user bound to
	// openID (or fresh with that openId, when none is) goes through edit, is
	// stored, and s is stored for it with s.UID set to its uid. Concurrent
	// first logins of one openId end with one user. edit may run more than once.
	LoginOpenID(openID string, fresh User, edit func(*User), s Session) (User, Session, error)

	// PutTicket stores a one-time WebSocket ticket until t.Expires.
	PutTicket(t Ticket) error
	// TakeTicket returns an unexpired ticket and deletes it in one step: of
	// concurrent callers with the same id one gets it, the others ErrNotFound.
	TakeTicket(id string) (Ticket, error)

	// AppendMessages stores a room's batch and its new last id in one transaction.
	AppendMessages(room string, msgs []Message) error
	// LastID is the highest id ever stored for room (0 for a new room).
	LastID(room string) (uint64, error)
	// MessagesAfter returns up to limit messages with id > after, oldest first.
	MessagesAfter(room string, after uint64, limit int) ([]Message, error)
	// MessagesBefore returns the (up to) limit messages just below before, oldest first.
	MessagesBefore(room string, before uint64, limit int) ([]Message, error)
	// TrimMessages deletes the room's messages (and events, and their reactions) with id < keepFrom.
	TrimMessages(room string, keepFrom uint64) (int, error)

	// SupportsEvents reports whether AppendMessages applies the effects of events
	// (Message.Effect: recalls and reactions) and Reactions answers. Rooms refuse
	// recalls and reactions on a store that does not.
	SupportsEvents() bool
	// Reactions returns the reactions on a message: the counts as a JSON object
	// ({"👍":3,..}, the emoji in the order they were first used; nil when none) and
	// uid's own as a JSON array (nil when none).
	Reactions(room string, target uint64, uid string) (counts, mine []byte, err error)
	// History returns the (up to) limit chat messages just below before, oldest
	// first: events are passed over, and so are recalled messages unless
	// q.Recalled. With q.Reactions each item carries its reactions as Reactions
	// returns them for q.UID. LastID is the room's last id, read at the same
	// moment as the page, so the page holds every event up to it.
	History(room string, before uint64, limit int, q HistoryQuery) (HistoryPage, error)

	// MarkRead moves read positions, all in one write: each mark sets UID's
	// position in Room to the higher of the one it has and ID, or to ID when it
	// has none; a mark with OnlyNew sets it only when it has none. Every mark
	// makes Room one of UID's rooms, unless UID has MaxReadRooms rooms already.
	MarkRead(marks []ReadMark) error
	// ReadPositions returns the rooms of uid and its read position in each,
	// ordered by room name.
	ReadPositions(uid string) ([]ReadPosition, error)
	// ReadPosition returns uid's read position in room, or ErrNotFound when the
	// room is not one of uid's.
	ReadPosition(uid, room string) (uint64, error)

	PutMedia(m Media) error
	// Media returns the metadata of a stored file or ErrNotFound.
	Media(id string) (Media, error)

	// AddUpload adds n bytes to uid's upload record at at (records of one user at the
	// same instant add up; callers round at to the granularity they count in) and, in
	// the same write, deletes uid's records from before forget.
	AddUpload(uid string, at time.Time, n int64, forget time.Time) error
	// Uploads returns uid's upload records at or after since, oldest first.
	Uploads(uid string, since time.Time) ([]Upload, error)

	// Sync flushes written data to stable storage.
	Sync() error
	Close() error
}

// Session is a login: the wafer id/skey pair and what it stands for.
type Session struct {
	ID         string    `json:"id"`
	Skey       string    `json:"skey"`
	UID        string    `json:"uid"`
	SessionKey string    `json:"sessionKey,omitempty"` // WeChat session_key: never logged, never sent
	Expires    time.Time `json:"expires"`
}

// Ticket opens one WebSocket in place of the session it was issued from, so
// that the session's skey stays out of URLs.
type Ticket struct {
	ID        string    `json:"id"`
	SessionID string    `json:"sessionId"`
	Expires   time.Time `json:"expires"`
}

// User is a person; OpenID is private, UID is what others see.
type User struct {
	UID     string    `json:"uid"`
	OpenID  string    `json:"openId,omitempty"`
	UnionID string    `json:"unionId,omitempty"`
	Profile Profile   `json:"profile"`
	Created time.Time `json:"created"`
}

// Profile is the public face of a user.
type Profile struct {
	NickName  string `json:"nickName"`
	AvatarURL string `json:"avatarUrl"`
	Gender    int    `json:"gender,omitempty"`
	City      string `json:"city,omitempty"`
	Province  string `json:"province,omitempty"`
	Country   string `json:"country,omitempty"`
	Language  string `json:"language,omitempty"`
}

// Message is one stored chat message or event: its id, its JSON object as the
// room encoded it, and the sender's cid (kept apart: only the sender may see it).
type Message struct {
	ID   uint64
	Data []byte
	CID  string
	// Effect is what storing an event changes in the room's history, in the
	// same transaction (nil for a chat message; never read back).
	Effect *Effect
}

// Effect is what an event does to an earlier message of its room, Target.
// A recall (Recall set) replaces the target's object with Recall, keeping its
// cid: the content is gone from the store; the target's reactions go too. A
// reaction sets the target's reaction counts to Counts and UID's own reactions
// on it to Mine, as Reactions returns them (nil: none left).
type Effect struct {
	Target uint64
	Recall []byte
	UID    string
	Counts []byte
	Mine   []byte
}

// HistoryQuery says what a History page holds.
type HistoryQuery struct {
	UID       string // whose own reactions Mine holds
	Recalled  bool   // recalled messages are in the page (else passed over)
	Reactions bool   // items carry their reactions
}

// HistoryPage is a page of chat messages and the room's last id at the moment it was read.
type HistoryPage struct {
	Items  []HistoryItem
	LastID uint64
}

// HistoryItem is a message with its reactions (with HistoryQuery.Reactions).
type HistoryItem struct {
	Message
	Counts, Mine []byte
}

// MaxReadRooms is how many rooms a user has read positions in at most:
// MarkRead leaves out a mark that would add another, so that a client naming
// new rooms cannot grow the store without bound.
const MaxReadRooms = 1000

// ReadMark moves a user's read position in a room (Store.MarkRead).
type ReadMark struct {
	UID, Room string
	ID        uint64
	OnlyNew   bool // only when the user has no position in the room yet
}

// ReadPosition is the highest id a user has seen in one of its rooms.
type ReadPosition struct {
	Room string
	ID   uint64
}

// Media is the metadata of an uploaded file; the bytes live on disk.
type Media struct {
	ID      string    `json:"id"`
	Owner   string    `json:"owner"` // uid of the first uploader
	MIME    string    `json:"mime"`
	Size    int64     `json:"size"`
	Width   int       `json:"width"`
	Height  int       `json:"height"`
	Created time.Time `json:"created"`
}

// Upload is the bytes one user uploaded in the interval that starts at At.
type Upload struct {
	At    time.Time
	Bytes int64
}
