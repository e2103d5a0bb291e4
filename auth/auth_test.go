package auth_test

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pandachat/pandachat/auth"
	"github.com/pandachat/pandachat/persistence"
	"github.com/pandachat/pandachat/protocol"
	"github.com/pandachat/pandachat/wechat"
	"github.com/pandachat/pandachat/wechat/wechattest"
)

const (
	appID  = "wx-test-app"
	secret = "test-secret"
)

var stores = []struct {
	name string
	open func(t *testing.T) persistence.Store
}{
	{"memory", func(*testing.T) persistence.Store { return persistence.NewMemory() }},
	{"badger", func(t *testing.T) persistence.Store {
		s, err := persistence.OpenBadger(t.TempDir(), persistence.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}},
}

// forEachStore runs fn against a Service on every store, with a fake WeChat.
func forEachStore(t *testing.T, fn func(t *testing.T, svc *auth.Service, wx *wechattest.Server)) {
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			wx := wechattest.New(t, appID, secret)
			svc := &auth.Service{
				Store:  st.open(t),
				WeChat: &wechat.Client{BaseURL: wx.URL, AppID: appID, Secret: secret},
			}
			fn(t, svc, wx)
		})
	}
}

func wantSkey(sessionKey string) string {
	sum := sha1.Sum([]byte(appID + secret + sessionKey))
	return hex.EncodeToString(sum[:])
}

func isHex(s string, n int) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == n && strings.ToLower(s) == s
}

// checkStored: the session is in the store and Check accepts it for the same user.
func checkStored(t *testing.T, svc *auth.Service, sess persistence.Session, u persistence.User) {
	t.Helper()
	if !isHex(sess.ID, 32) {
		t.Errorf("session id %q is not 32 random bytes in hex", sess.ID)
	}
	got, gu, err := svc.Check(sess.ID, sess.Skey)
	if err != nil {
		t.Fatalf("Check of a fresh session: %v", err)
	}
	if got.UID != u.UID || gu.UID != u.UID || gu.Profile != u.Profile {
		t.Errorf("Check = %+v, %+v; want user %+v", got, gu, u)
	}
}

func TestLoginCode(t *testing.T) {
	forEachStore(t, func(t *testing.T, svc *auth.Service, wx *wechattest.Server) {
		now := time.Now().UTC()
		svc.Now = func() time.Time { return now }
		key1, key2 := wechattest.NewSessionKey(), wechattest.NewSessionKey()
		wx.AddCode("code-1", "o-panda", key1)
		wx.AddCode("code-2", "o-panda", key2)

		s1, u1, err := svc.LoginCode(context.Background(), "code-1", "", "")
		if err != nil {
			t.Fatalf("LoginCode: %v", err)
		}
		if s1.Skey != wantSkey(key1) {
			t.Errorf("skey %q, want hex(sha1(appId+secret+session_key)) %q", s1.Skey, wantSkey(key1))
		}
		if s1.SessionKey != key1 || s1.UID != u1.UID || !s1.Expires.Equal(now.Add(24*time.Hour)) {
			t.Errorf("session %+v: want session_key kept, uid %s, expiry in 24 h", s1, u1.UID)
		}
		if !isHex(u1.UID, 12) || u1.OpenID != "o-panda" || !u1.Created.Equal(now) {
			t.Errorf("user %+v: want a random uid, openId o-panda, created now", u1)
		}
		if strings.Contains(u1.UID, "o-panda") || u1.Profile.NickName == "" || u1.Profile.AvatarURL != auth.DefaultAvatarPath {
			t.Errorf("profile %+v: want a default nickname and avatar, uid not derived from the openId", u1.Profile)
		}
		checkStored(t, svc, s1, u1)

		s2, u2, err := svc.LoginCode(context.Background(), "code-2", "", "")
		if err != nil {
			t.Fatalf("second LoginCode: %v", err)
		}
		if u2.UID != u1.UID || u2.Profile != u1.Profile {
			t.Errorf("second login: user %+v, want the same as %+v", u2, u1)
		}
		if s2.ID == s1.ID || s2.Skey != wantSkey(key2) {
			t.Errorf("second login reused session %s or has skey %s", s2.ID, s2.Skey)
		}
		checkStored(t, svc, s1, u1) // the first session stays valid
		checkStored(t, svc, s2, u2)
	})
}

func TestLoginCodeUnionID(t *testing.T) {
	forEachStore(t, func(t *testing.T, svc *auth.Service, wx *wechattest.Server) {
		wx.AddCode("c", "o-1", wechattest.NewSessionKey())
		wx.SetUnionID("o-1", "union-1")
		_, u, err := svc.LoginCode(context.Background(), "c", "", "")
		if err != nil || u.UnionID != "union-1" {
			t.Fatalf("LoginCode = %+v, %v; want unionId union-1", u, err)
		}
	})
}

func TestLoginCodeEncryptedData(t *testing.T) {
	forEachStore(t, func(t *testing.T, svc *auth.Service, wx *wechattest.Server) {
		// A user known from a code-only login gets the profile from the data, same uid.
		wx.AddCode("plain", "o-1", wechattest.NewSessionKey())
		_, before, err := svc.LoginCode(context.Background(), "plain", "", "")
		if err != nil {
			t.Fatal(err)
		}
		key := wechattest.NewSessionKey()
		wx.AddCode("with-data", "o-1", key)
		info := wechat.UserInfo{
			OpenID: "o-1", UnionID: "un-1", NickName: "熊猫 Bao", AvatarURL: "https://wx.qlogo.cn/a/132",
			Gender: 1, City: "Chengdu", Province: "Sichuan", Country: "China", Language: "zh_CN",
			Watermark: wechat.Watermark{AppID: appID, Timestamp: time.Now().Unix()},
		}
		data, iv := wechattest.EncryptUserInfo(key, info)
		sess, u, err := svc.LoginCode(context.Background(), "with-data", data, iv)
		if err != nil {
			t.Fatalf("LoginCode with encrypted data: %v", err)
		}
		want := persistence.Profile{NickName: info.NickName, AvatarURL: info.AvatarURL, Gender: 1,
			City: "Chengdu", Province: "Sichuan", Country: "China", Language: "zh_CN"}
		if u.UID != before.UID || u.Profile != want || u.UnionID != "un-1" {
			t.Errorf("user %+v, want uid %s with profile %+v and unionId un-1", u, before.UID, want)
		}
		if stored, err := svc.Store.UserByOpenID("o-1"); err != nil || stored.Profile != want {
			t.Errorf("stored user %+v, %v; want the new profile", stored, err)
		}
		checkStored(t, svc, sess, u)
	})
}

func TestLoginCodeRefused(t *testing.T) {
	otherKey := wechattest.NewSessionKey()
	for _, tt := range []struct {
		name string
		// data builds encryptedData and iv for the code's session key.
		data    func(key string) (string, string)
		code    string
		errcode int
	}{
		{name: "unknown code", code: "nope", errcode: 40029},
		{name: "WeChat refusal", code: "risky", errcode: 40226},
		{name: "empty code", code: ""},
		{name: "wrong watermark", code: "ok", data: func(k string) (string, string) {
			return wechattest.EncryptUserInfo(k, wechat.UserInfo{OpenID: "o-1", NickName: "x", Watermark: wechat.Watermark{AppID: "wx-other"}})
		}},
		{name: "no watermark", code: "ok", data: func(k string) (string, string) {
			return wechattest.EncryptUserInfo(k, wechat.UserInfo{OpenID: "o-1", NickName: "x"})
		}},
		{name: "another user's data", code: "ok", data: func(k string) (string, string) {
			return wechattest.EncryptUserInfo(k, wechat.UserInfo{OpenID: "o-2", NickName: "x", Watermark: wechat.Watermark{AppID: appID}})
		}},
		{name: "data naming no user", code: "ok", data: func(k string) (string, string) {
			return wechattest.EncryptUserInfo(k, map[string]any{"phoneNumber": "123", "watermark": map[string]any{"appid": appID}})
		}},
		{name: "data for another session key", code: "ok", data: func(string) (string, string) {
			return wechattest.EncryptUserInfo(otherKey, wechat.UserInfo{OpenID: "o-1", Watermark: wechat.Watermark{AppID: appID}})
		}},
		{name: "data without iv", code: "ok", data: func(k string) (string, string) {
			d, _ := wechattest.EncryptUserInfo(k, wechat.UserInfo{OpenID: "o-1", Watermark: wechat.Watermark{AppID: appID}})
			return d, ""
		}},
		{name: "iv without data", code: "ok", data: func(string) (string, string) { return "", "AAAAAAAAAAAAAAAAAAAAAA==" }},
		{name: "garbage data", code: "ok", data: func(string) (string, string) { return "not base64!", "also not" }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			forEachStore(t, func(t *testing.T, svc *auth.Service, wx *wechattest.Server) {
				key := wechattest.NewSessionKey()
				wx.AddCode("ok", "o-1", key)
				wx.FailCode("risky", 40226, "high risk user")
				var data, iv string
				if tt.data != nil {
					data, iv = tt.data(key)
				}
				sess, _, err := svc.LoginCode(context.Background(), tt.code, data, iv)
				var we *wechat.Error
				if !errors.As(err, &we) {
					t.Fatalf("LoginCode = %+v, %v; want a *wechat.Error", sess, err)
				}
				if !we.Refused || we.Code != tt.errcode {
					t.Errorf("error %+v: want a refusal with errcode %d", we, tt.errcode)
				}
				if strings.Contains(we.Error(), secret) || strings.Contains(we.Error(), key) {
					t.Errorf("error %q quotes a secret", we)
				}
				if u, err := svc.Store.UserByOpenID("o-1"); !errors.Is(err, persistence.ErrNotFound) {
					t.Errorf("a refused login stored user %+v (%v)", u, err)
				}
			})
		})
	}
}

func TestLoginCodeWeChatDown(t *testing.T) {
	forEachStore(t, func(t *testing.T, svc *auth.Service, wx *wechattest.Server) {
		wx.AddCode("c", "o-1", wechattest.NewSessionKey())
		wx.SetMode(wechattest.HTTP500)
		_, _, err := svc.LoginCode(context.Background(), "c", "", "")
		var we *wechat.Error
		if !errors.As(err, &we) || we.Refused {
			t.Fatalf("LoginCode with WeChat down = %v; want a *wechat.Error that is not a refusal", err)
		}
	})
}

func TestLoginCodeWithoutWeChat(t *testing.T) {
	svc := &auth.Service{Store: persistence.NewMemory()}
	_, _, err := svc.LoginCode(context.Background(), "c", "", "")
	var we *wechat.Error
	if !errors.As(err, &we) || !we.Refused {
		t.Fatalf("LoginCode without WeChat = %v; want a refusal", err)
	}
}

func TestLoginDev(t *testing.T) {
	max := strings.Repeat("熊", protocol.DefaultMaxNickName)
	for _, tt := range []struct {
		name, in, want string // want "": refused
	}{
		{"plain", "Panda", "Panda"},
		{"trimmed", " \t Panda Bao \n", "Panda Bao"},
		{"multi-byte", "熊猫🐼", "熊猫🐼"},
		{"at the limit", max, max},
		{"at the limit after trimming", "  " + max + "  ", max},
		{"one past the limit", max + "x", ""},
		{"empty", "", ""},
		{"blank", " \t\u3000\n", ""},
		{"invalid UTF-8", "Pan\xffda", ""},
		{"a line break inside", "Pan\nda", ""},
		{"a control character", "Pan\x07da", ""},
		{"a control character first", "\x07Panda", ""},
		{"right-to-left override", "\u202Egnp.exe", "gnp.exe"},
		{"every bidi control", "a\u202Ab\u202Bc\u202Cd\u202De\u202Ef\u2066g\u2067h\u2068i\u2069j", "abcdefghij"},
		{"zero-width spaces", "Pa\u200Bn\u2060d\uFEFFa", "Panda"},
		{"only invisible", "\u200B\u202E\uFEFF", ""},
		{"invisible around blanks", "\u200B \u2066 ", ""},
		{"at the limit once cleaned", max + "\u200B\u202E", max},
		{"emoji joiner and variation selector stay", "👩\u200D💻 ❤\uFE0F", "👩\u200D💻 ❤\uFE0F"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			forEachStore(t, func(t *testing.T, svc *auth.Service, _ *wechattest.Server) {
				sess, u, err := svc.LoginDev(tt.in)
				if tt.want == "" {
					if !errors.Is(err, auth.ErrBadNickName) {
						t.Fatalf("LoginDev(%q) = %+v, %v; want ErrBadNickName", tt.in, u, err)
					}
					return
				}
				if err != nil {
					t.Fatalf("LoginDev(%q): %v", tt.in, err)
				}
				if u.Profile.NickName != tt.want || u.OpenID != "" || u.Profile.AvatarURL != auth.DefaultAvatarPath {
					t.Errorf("user %+v: want nickName %q, no openId, default avatar", u, tt.want)
				}
				if !isHex(sess.Skey, sha1.Size) {
					t.Errorf("skey %q is not a hex SHA-1", sess.Skey)
				}
				checkStored(t, svc, sess, u)
				// The same nickname again is another person.
				_, u2, err := svc.LoginDev(tt.in)
				if err != nil || u2.UID == u.UID {
					t.Errorf("second LoginDev = %s, %v; want a new uid", u2.UID, err)
				}
			})
		})
	}
}

func TestCheck(t *testing.T) {
	forEachStore(t, func(t *testing.T, svc *auth.Service, wx *wechattest.Server) {
		sess, u, err := svc.LoginDev("checker")
		if err != nil {
			t.Fatal(err)
		}
		other, _, err := svc.LoginDev("other")
		if err != nil {
			t.Fatal(err)
		}
		third, _, err := svc.LoginDev("third")
		if err != nil {
			t.Fatal(err)
		}
		// A session whose user is gone (e.g. restored from an older backup).
		if err := svc.Store.PutSession(persistence.Session{ID: "no-user", Skey: "k", UID: "missing", Expires: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		deleted, _, err := svc.LoginDev("deleted")
		if err != nil {
			t.Fatal(err)
		}
		if err := svc.Store.DeleteSession(deleted.ID); err != nil {
			t.Fatal(err)
		}
		long := strings.Repeat("a", 129)
		// The longest id and skey Check reads from the store.
		longest := persistence.Session{ID: strings.Repeat("e", 128), Skey: strings.Repeat("k", 128), UID: u.UID, Expires: time.Now().Add(time.Hour)}
		if err := svc.Store.PutSession(longest); err != nil {
			t.Fatal(err)
		}

		for _, tt := range []struct {
			name     string
			id, skey string
			now      func() time.Time
			ok       bool
		}{
			{"valid", sess.ID, sess.Skey, nil, true},
			{"valid until just before expiry", sess.ID, sess.Skey, func() time.Time { return sess.Expires.Add(-time.Second) }, true},
			{"another valid session", third.ID, third.Skey, nil, true},
			{"id and skey of 128 bytes", longest.ID, longest.Skey, nil, true},
			{"wrong skey", sess.ID, strings.Repeat("0", 40), nil, false},
			{"skey of another session", sess.ID, other.Skey, nil, false},
			{"skey in upper case", sess.ID, strings.ToUpper(sess.Skey), nil, false},
			{"skey prefix", sess.ID, sess.Skey[:39], nil, false},
			{"unknown id", strings.Repeat("ab", 32), sess.Skey, nil, false},
			{"deleted session", deleted.ID, deleted.Skey, nil, false},
			{"user gone", "no-user", "k", nil, false},
			{"empty id", "", sess.Skey, nil, false},
			{"empty skey", sess.ID, "", nil, false},
			{"both empty", "", "", nil, false},
			{"expired", sess.ID, sess.Skey, func() time.Time { return time.Now().Add(25 * time.Hour) }, false},
			{"at expiry", sess.ID, sess.Skey, func() time.Time { return sess.Expires }, false},
			{"oversized id", long, sess.Skey, nil, false},
			{"oversized skey", sess.ID, long, nil, false},
			{"huge skey", sess.ID, strings.Repeat(sess.Skey, 1000), nil, false},
		} {
			svc.Now = tt.now
			gs, gu, err := svc.Check(tt.id, tt.skey)
			if tt.ok {
				if err != nil || gs.ID != tt.id || gu.UID != gs.UID {
					t.Errorf("%s: Check = %+v, %+v, %v; want the session and its user", tt.name, gs, gu, err)
				}
				continue
			}
			if !errors.Is(err, auth.ErrInvalidSession) {
				t.Errorf("%s: Check = %+v, %v; want ErrInvalidSession", tt.name, gs, err)
			}
			if gu != (persistence.User{}) {
				t.Errorf("%s: a refused Check returned user %+v", tt.name, gu)
			}
		}
		svc.Now = nil
		if _, gu, err := svc.Check(sess.ID, sess.Skey); err != nil || gu.UID != u.UID {
			t.Errorf("Check after the table = %+v, %v", gu, err)
		}
	})
}

// TestSessionSurvivesReopen: a login is still valid after the store is reopened.
func TestSessionSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	open := func() *persistence.Badger {
		s, err := persistence.OpenBadger(dir, persistence.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open()
	sess, u, err := (&auth.Service{Store: s}).LoginDev("durable")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open()
	defer s.Close()
	if _, gu, err := (&auth.Service{Store: s}).Check(sess.ID, sess.Skey); err != nil || gu.UID != u.UID || gu.Profile != u.Profile {
		t.Fatalf("Check after reopen = %+v, %v; want %+v", gu, err, u)
	}
}

// A WeChat profile's nickname is cleaned too; one with nothing left keeps the
// name the user had (here the default one).
func TestLoginCodeCleansNickName(t *testing.T) {
	forEachStore(t, func(t *testing.T, svc *auth.Service, wx *wechattest.Server) {
		for _, tt := range []struct{ code, nick, want string }{
			{"spoof", "\u202Emei\u200B", "mei"},
			{"blank", "\u200B\u2060", "mei"},
		} {
			key := wechattest.NewSessionKey()
			wx.AddCode(tt.code, "o-nick", key)
			data, iv := wechattest.EncryptUserInfo(key, wechat.UserInfo{OpenID: "o-nick", NickName: tt.nick,
				Watermark: wechat.Watermark{AppID: appID, Timestamp: time.Now().Unix()}})
			_, u, err := svc.LoginCode(context.Background(), tt.code, data, iv)
			if err != nil || u.Profile.NickName != tt.want {
				t.Errorf("WeChat nickname %q: user %+v, %v; want nickName %q", tt.nick, u, err, tt.want)
			}
		}
		key := wechattest.NewSessionKey()
		wx.AddCode("first", "o-new", key)
		data, iv := wechattest.EncryptUserInfo(key, wechat.UserInfo{OpenID: "o-new", NickName: "\uFEFF",
			Watermark: wechat.Watermark{AppID: appID, Timestamp: time.Now().Unix()}})
		_, u, err := svc.LoginCode(context.Background(), "first", data, iv)
		if err != nil || !strings.HasPrefix(u.Profile.NickName, "Panda-") {
			t.Errorf("first login with a blank WeChat nickname: %+v, %v; want the default nickname", u, err)
		}
	})
}

// Many first logins of one openId at once end with one user (on Badger: the
// lookup and the create are one transaction).
func TestLoginCodeConcurrentFirstLogins(t *testing.T) {
	forEachStore(t, func(t *testing.T, svc *auth.Service, wx *wechattest.Server) {
		for round := range 5 {
			openID := fmt.Sprintf("o-race-%d", round)
			const n = 20
			for i := range n {
				wx.AddCode(fmt.Sprintf("c-%d-%d", round, i), openID, wechattest.NewSessionKey())
			}
			wx.Gather(n) // the answers come back together, so the logins meet in the store
			uids := make([]string, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					sess, u, err := svc.LoginCode(context.Background(), fmt.Sprintf("c-%d-%d", round, i), "", "")
					if err != nil {
						t.Error(err)
						return
					}
					if sess.UID != u.UID {
						t.Errorf("session uid %s, user %s", sess.UID, u.UID)
					}
					uids[i] = u.UID
				}()
			}
			wg.Wait()
			stored, err := svc.Store.UserByOpenID(openID)
			if err != nil {
				t.Fatal(err)
			}
			for i, uid := range uids {
				if uid != stored.UID {
					t.Fatalf("round %d: login %d got uid %s, the openId is bound to %s", round, i, uid, stored.UID)
				}
			}
		}
	})
}

func TestTickets(t *testing.T) {
	forEachStore(t, func(t *testing.T, svc *auth.Service, _ *wechattest.Server) {
		sess, u, err := svc.LoginDev("ticketed")
		if err != nil {
			t.Fatal(err)
		}
		issue := func() persistence.Ticket {
			t.Helper()
			tk, err := svc.IssueTicket(sess)
			if err != nil {
				t.Fatal(err)
			}
			return tk
		}
		tk := issue()
		if !isHex(tk.ID, 32) || tk.SessionID != sess.ID || tk.ID == sess.ID || tk.ID == sess.Skey {
			t.Errorf("ticket %+v: want 32 random bytes in hex standing for session %s", tk, sess.ID)
		}
		if d := time.Until(tk.Expires); d <= 25*time.Second || d > auth.TicketTTL {
			t.Errorf("ticket expires in %s, want %s", d, auth.TicketTTL)
		}
		gs, gu, err := svc.CheckTicket(tk.ID)
		if err != nil || gs.ID != sess.ID || gu.UID != u.UID {
			t.Fatalf("CheckTicket = %+v %+v %v; want the session and its user", gs, gu, err)
		}
		if _, _, err := svc.CheckTicket(tk.ID); !errors.Is(err, auth.ErrInvalidSession) {
			t.Errorf("second use: %v, want ErrInvalidSession", err)
		}
		for _, id := range []string{"", strings.Repeat("ab", 32), strings.Repeat("a", 129), sess.ID} {
			if _, _, err := svc.CheckTicket(id); !errors.Is(err, auth.ErrInvalidSession) {
				t.Errorf("CheckTicket(%q) = %v, want ErrInvalidSession", id, err)
			}
		}
		// The longest ticket id CheckTicket reads from the store.
		longest := persistence.Ticket{ID: strings.Repeat("t", 128), SessionID: sess.ID, Expires: time.Now().Add(auth.TicketTTL)}
		if err := svc.Store.PutTicket(longest); err != nil {
			t.Fatal(err)
		}
		if gs, _, err := svc.CheckTicket(longest.ID); err != nil || gs.ID != sess.ID {
			t.Errorf("ticket id of 128 bytes: %+v, %v; want the session", gs, err)
		}
		// Expired: refused (the clock moves past the ticket's 30 s).
		late := issue()
		svc.Now = func() time.Time { return time.Now().Add(auth.TicketTTL + time.Second) }
		if _, _, err := svc.CheckTicket(late.ID); !errors.Is(err, auth.ErrInvalidSession) {
			t.Errorf("expired ticket: %v, want ErrInvalidSession", err)
		}
		svc.Now = nil
		// A ticket of a session that ended is refused: logout ends its tickets too.
		unused := issue()
		if err := svc.Logout(sess.ID); err != nil {
			t.Fatal(err)
		}
		if _, _, err := svc.CheckTicket(unused.ID); !errors.Is(err, auth.ErrInvalidSession) {
			t.Errorf("ticket after logout: %v, want ErrInvalidSession", err)
		}
		if _, _, err := svc.Check(sess.ID, sess.Skey); !errors.Is(err, auth.ErrInvalidSession) {
			t.Errorf("Check after logout: %v, want ErrInvalidSession", err)
		}
	})
}
