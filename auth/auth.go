// Package auth turns WeChat codes and dev nicknames into wafer sessions and
// checks id/skey pairs. Sessions and users live in the store.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/pandachat/pandachat/persistence"
	"github.com/pandachat/pandachat/protocol"
	"github.com/pandachat/pandachat/wechat"
)

// ErrInvalidSession means the id/skey pair is unknown, wrong or expired.
var ErrInvalidSession = errors.New("invalid or expired session")

// ErrBadNickName refuses an empty or too long nickname.
var ErrBadNickName = fmt.Errorf("nickName must be 1 to %d characters on one line", protocol.DefaultMaxNickName)

// Service logs people in. WeChat may be nil when no app is configured.
type Service struct {
	Store  persistence.Store
	WeChat *wechat.Client
	TTL    time.Duration    // session lifetime (default 24 h)
	Now    func() time.Time // default time.Now
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Service) ttl() time.Duration {
	if s.TTL > 0 {
		return s.TTL
	}
	return 24 * time.Hour
}

// LoginCode exchanges a wx.login code (and, from old clients, encrypted user
// data) for a session. WeChat failures come back as *wechat.Error.
func (s *Service) LoginCode(ctx context.Context, code, encryptedData, iv string) (persistence.Session, persistence.User, error) {
	if s.WeChat == nil {
		return persistence.Session{}, persistence.User{}, &wechat.Error{Refused: true, Msg: "WeChat login is not configured on this server (no appid)"}
	}
	ws, err := s.WeChat.Code2Session(ctx, code)
	if err != nil {
		return persistence.Session{}, persistence.User{}, err
	}
	var info *wechat.UserInfo
	if encryptedData != "" || iv != "" {
		ui, err := wechat.DecryptUserInfo(ws.SessionKey, encryptedData, iv, s.WeChat.AppID)
		if err != nil {
			return persistence.Session{}, persistence.User{}, err
		}
		if ui.OpenID != ws.OpenID { // data that does not name this user (e.g. a phone number) is no profile
			return persistence.Session{}, persistence.User{}, &wechat.Error{Refused: true, Msg: "encrypted data belongs to another user"}
		}
		info = &ui
	}
	fresh := persistence.User{UID: newUID(), Created: s.now()}
	fresh.Profile = defaultProfile(fresh.UID)
	edit := func(u *persistence.User) { // runs on the stored user, or on fresh for a first login
		if info != nil { // the old flow carries a real profile: take it
			nick := u.Profile.NickName
			if n, err := CleanNickName(info.NickName); err == nil {
				nick = n // an unusable WeChat nickname leaves the one we have
			}
			u.Profile = persistence.Profile{
				NickName: nick, AvatarURL: info.AvatarURL, Gender: info.Gender,
				City: info.City, Province: info.Province, Country: info.Country, Language: info.Language,
			}
			if info.UnionID != "" {
				u.UnionID = info.UnionID
			}
		}
		if u.UnionID == "" {
			u.UnionID = ws.UnionID
		}
	}
	// Lookup and create in one step: two first logins of one openId make one user.
	u, sess, err := s.Store.LoginOpenID(ws.OpenID, fresh, edit, s.newSession("", ws.SessionKey, s.WeChat.AppID+s.WeChat.Secret))
	if err != nil {
		return persistence.Session{}, persistence.User{}, err
	}
	return sess, u, nil
}

// LoginDev creates a new user with the given nickname and a session for it.
func (s *Service) LoginDev(nickName string) (persistence.Session, persistence.User, error) {
	nick, err := CleanNickName(nickName)
	if err != nil {
		return persistence.Session{}, persistence.User{}, err
	}
	u := persistence.User{UID: newUID(), Created: s.now()}
	u.Profile = defaultProfile(u.UID)
	u.Profile.NickName = nick
	sess := s.newSession(u.UID, randomHex(16), "dev")
	return sess, u, s.Store.PutLogin(u, sess)
}

// Check returns the session and its user for a valid id/skey pair.
func (s *Service) Check(id, skey string) (persistence.Session, persistence.User, error) {
	if id == "" || skey == "" || len(id) > 128 || len(skey) > 128 {
		return persistence.Session{}, persistence.User{}, ErrInvalidSession
	}
	sess, u, err := s.Store.SessionUser(id)
	if errors.Is(err, persistence.ErrNotFound) {
		return persistence.Session{}, persistence.User{}, ErrInvalidSession
	}
	if err != nil {
		return persistence.Session{}, persistence.User{}, err
	}
	if subtle.ConstantTimeCompare([]byte(sess.Skey), []byte(skey)) != 1 || !sess.Expires.After(s.now()) {
		return persistence.Session{}, persistence.User{}, ErrInvalidSession
	}
	return sess, u, nil
}

// Logout ends a session: Check refuses it from now on, and so do its tickets.
func (s *Service) Logout(sessionID string) error { return s.Store.DeleteSession(sessionID) }

// TicketTTL is how long a WebSocket ticket waits for its one use.
const TicketTTL = 30 * time.Second

// IssueTicket makes a one-time ticket that opens a WebSocket in place of sess.
func (s *Service) IssueTicket(sess persistence.Session) (persistence.Ticket, error) {
	t := persistence.Ticket{ID: randomHex(32), SessionID: sess.ID, Expires: s.now().Add(TicketTTL)}
	if err := s.Store.PutTicket(t); err != nil {
		return persistence.Ticket{}, err
	}
	return t, nil
}

// CheckTicket uses up a ticket and returns the session it stands for and its
// user. A used, expired or unknown ticket, or one whose session has ended, is
// ErrInvalidSession, like a bad id/skey pair.
func (s *Service) CheckTicket(id string) (persistence.Session, persistence.User, error) {
	if id == "" || len(id) > 128 {
		return persistence.Session{}, persistence.User{}, ErrInvalidSession
	}
	t, err := s.Store.TakeTicket(id)
	if errors.Is(err, persistence.ErrNotFound) {
		return persistence.Session{}, persistence.User{}, ErrInvalidSession
	}
	if err != nil {
		return persistence.Session{}, persistence.User{}, err
	}
	if !t.Expires.After(s.now()) {
		return persistence.Session{}, persistence.User{}, ErrInvalidSession
	}
	sess, u, err := s.Store.SessionUser(t.SessionID)
	if errors.Is(err, persistence.ErrNotFound) {
		return persistence.Session{}, persistence.User{}, ErrInvalidSession
	}
	if err != nil {
		return persistence.Session{}, persistence.User{}, err
	}
	if !sess.Expires.After(s.now()) {
		return persistence.Session{}, persistence.User{}, ErrInvalidSession
	}
	return sess, u, nil
}

// newSession: id = 32 random bytes as hex; skey = hex(sha1(appId + appSecret + session_key)) as wafer does.
func (s *Service) newSession(uid, sessionKey, salt string) persistence.Session {
	sum := sha1.Sum([]byte(salt + sessionKey))
	sess := persistence.Session{
		ID:         randomHex(32),
		Skey:       hex.EncodeToString(sum[:]),
		UID:        uid,
		SessionKey: sessionKey,
		Expires:    s.now().Add(s.ttl()),
	}
	return sess
}

// CleanNickName removes characters that spoof names, trims the rest and checks
// its length. What is empty then is refused.
func CleanNickName(n string) (string, error) {
	if !utf8.ValidString(n) { // before strings.Map, which would turn bad bytes into U+FFFD
		return "", ErrBadNickName
	}
	n = strings.TrimSpace(strings.Map(dropSpoofer, n))
	if c := utf8.RuneCountInString(n); c == 0 || c > protocol.DefaultMaxNickName {
		return "", ErrBadNickName
	}
	if strings.IndexFunc(n, unicode.IsControl) >= 0 { // a nickname is one line of text
		return "", ErrBadNickName
	}
	return n, nil
}

// dropSpoofer removes bidirectional embeddings, overrides and isolates
// (U+202A–U+202E, U+2066–U+2069: they reverse or reorder the text after them,
// in the name and in what follows it on screen) and zero-width spaces (U+200B,
// U+2060, U+FEFF: two names that look the same). The zero-width joiner U+200D
// and variation selectors stay: emoji need them.
func dropSpoofer(r rune) rune {
	switch {
	case r >= '\u202A' && r <= '\u202E', r >= '\u2066' && r <= '\u2069', r == '\u200B', r == '\u2060', r == '\uFEFF':
		return -1
	}
	return r
}

// DefaultAvatarPath is served by the web package; transport makes it absolute.
const DefaultAvatarPath = "/avatar/default.png"

func defaultProfile(uid string) persistence.Profile {
	return persistence.Profile{NickName: "Panda-" + uid[:4], AvatarURL: DefaultAvatarPath}
}

func newUID() string { return randomHex(12) }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b)
}
