package server_test

import (
	"sync/atomic"
	"testing"

	"github.com/pandachat/pandachat/internal/chattest"
	"github.com/pandachat/pandachat/persistence"
)

// loginBetween is a store where, once armed, another login of the user lands
// right after a request read its session: the user record changes (a new
// unionId) between the read and the request's own write.
type loginBetween struct {
	persistence.Store
	armed atomic.Bool
}

func (s *loginBetween) SessionUser(id string) (persistence.Session, persistence.User, error) {
	sess, u, err := s.Store.SessionUser(id)
	if err == nil && s.armed.CompareAndSwap(true, false) {
		moved := u
		moved.UnionID = "union-from-the-other-login"
		if perr := s.Store.PutUser(moved); perr != nil {
			return sess, u, perr
		}
	}
	return sess, u, err
}

// POST /profile changes the fields it names in the stored user, not a copy
// read before: what a login from another device stored meanwhile is kept.
func TestProfileKeepsAConcurrentLogin(t *testing.T) {
	var st *loginBetween
	cfg := noLimit()
	cfg.WrapStore = func(s persistence.Store) persistence.Store { st = &loginBetween{Store: s}; return st }
	env := chattest.Start(t, cfg)
	s := env.DevLogin("mei")
	st.armed.Store(true)
	var out map[string]any
	if status := env.Do(s, "POST", "/profile", map[string]any{"nickName": "Mei II"}, &out); status != 200 || out["nickName"] != "Mei II" {
		t.Fatalf("POST /profile: HTTP %d %v", status, out)
	}
	u, err := st.Store.User(s.UserInfo["uid"].(string))
	if err != nil || u.UnionID != "union-from-the-other-login" || u.Profile.NickName != "Mei II" {
		t.Errorf("stored user %+v, %v; want the new nickname and the other login's unionId", u, err)
	}
}
