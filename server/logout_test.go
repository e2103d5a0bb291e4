package server_test

import (
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pandachat/pandachat/internal/chattest"
	"github.com/pandachat/pandachat/persistence"
	"github.com/pandachat/pandachat/wechat/wechattest"
)

// refusedSession asserts that c gets the invalid-session frame, then close 1008.
func refusedSession(t *testing.T, c *chattest.Client, who string) {
	t.Helper()
	for {
		m := c.Next()
		if m["type"] == "user" || m["type"] == "remote" || m["type"] == "system" {
			continue // frames queued before the session ended
		}
		if m[chattest.Magic] != float64(1) || m["error"] != "ERR_INVALID_SESSION" {
			t.Fatalf("%s: frame %v, want {MAGIC:1, error: ERR_INVALID_SESSION}", who, m)
		}
		break
	}
	if code := c.Closed(); code != 1008 {
		t.Fatalf("%s: close code %d, want 1008", who, code)
	}
}

// untilContent reads c's chat frames up to the one of type typ with content;
// a post sent after logout on the way fails the test.
func untilContent(t *testing.T, c *chattest.Client, typ, content string) {
	t.Helper()
	for {
		m := c.Next()
		if m["content"] == "after logout" {
			t.Fatalf("a post sent after logout was delivered: %v", m)
		}
		if m["type"] == typ && m["content"] == content {
			return
		}
	}
}

// POST /logout ends the session: its open sockets get the invalid-session
// frame and close 1008 and post nothing more; the same user's other session
// and its socket are untouched.
func TestLogoutClosesTheSessionsSockets(t *testing.T) {
	env, wx := wechatEnv(t)
	wx.AddCode("c1", "o-mei", wechattest.NewSessionKey())
	wx.AddCode("c2", "o-mei", wechattest.NewSessionKey())
	wx.AddCode("c3", "o-watcher", wechattest.NewSessionKey())
	_, ans1 := login(t, env, map[string]string{"X-WX-Code": "c1"}, "")
	_, ans2 := login(t, env, map[string]string{"X-WX-Code": "c2"}, "")
	phone, laptop := sessionOf(t, ans1), sessionOf(t, ans2)
	if phone.UserInfo["uid"] != laptop.UserInfo["uid"] || phone.ID == laptop.ID {
		t.Fatalf("want two sessions of one user: %v / %v", phone.UserInfo, laptop.UserInfo)
	}
	_, ans3 := login(t, env, map[string]string{"X-WX-Code": "c3"}, "")
	watcher := sessionOf(t, ans3)

	a1, a2 := env.Dial(phone, "room=bye"), env.Dial(phone, "room=other")
	b := env.Dial(laptop, "room=bye")
	w := env.Dial(watcher, "room=bye")
	for _, c := range []*chattest.Client{a1, a2, b, w} {
		c.NextOfType("system")
	}
	a1.Send(map[string]any{"text": true, "content": "before"})
	if m := w.NextOfType("remote"); m["content"] != "before" {
		t.Fatalf("watcher got %v", m)
	}

	var out map[string]any
	if code := env.Do(phone, "POST", "/logout", nil, &out); code != 200 || len(out) != 1 || out["code"] != float64(0) {
		t.Fatalf("logout: HTTP %d %v, want 200 {\"code\":0}", code, out)
	}
	// Posts sent right after the logout answer are not accepted.
	_ = a1.Conn.WriteString(`{"text":true,"content":"after logout"}`)
	_ = a2.Conn.WriteString(`{"text":true,"content":"after logout"}`)
	refusedSession(t, a1, "socket 1 of the ended session")
	refusedSession(t, a2, "socket 2 of the ended session")

	// The other session goes on: it posts and everyone left sees it.
	if b.IsClosed() {
		t.Fatal("the socket of the user's other session was closed")
	}
	b.Send(map[string]any{"text": true, "content": "still here"})
	untilContent(t, b, "user", "still here")
	untilContent(t, w, "remote", "still here")
	var hist []map[string]any
	if code := env.Do(laptop, "GET", "/history?room=bye", nil, &hist); code != 200 {
		t.Fatalf("history: HTTP %d", code)
	}
	for _, m := range hist {
		if m["content"] == "after logout" {
			t.Fatalf("a post sent after logout was stored: %v", hist)
		}
	}

	// The ended session is refused everywhere; the other one is not.
	if code := env.Do(phone, "GET", "/me", nil, nil); code != 401 {
		t.Errorf("/me after logout: HTTP %d, want 401", code)
	}
	if code := env.Do(phone, "POST", "/logout", nil, nil); code != 401 {
		t.Errorf("second logout: HTTP %d, want 401", code)
	}
	if code := env.Do(phone, "POST", "/ws-ticket", nil, nil); code != 401 {
		t.Errorf("ticket after logout: HTTP %d, want 401", code)
	}
	refusedSession(t, env.Dial(phone, "room=bye"), "a new socket of the ended session")
	if code := env.Do(laptop, "GET", "/me", nil, nil); code != 200 {
		t.Errorf("/me of the other session: HTTP %d, want 200", code)
	}
	if b.IsClosed() {
		t.Error("the other session's socket closed")
	}

	// Logout is POST only.
	req, _ := http.NewRequest("GET", env.URL+"/logout", nil)
	req.Header.Set("X-WX-Id", laptop.ID)
	req.Header.Set("X-WX-Skey", laptop.Skey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /logout: HTTP %d, want 405", resp.StatusCode)
	}
}

// ticket asks POST /ws-ticket for s.
func ticket(t *testing.T, env *chattest.Env, s chattest.Session) string {
	t.Helper()
	var out map[string]any
	if code := env.Do(s, "POST", "/ws-ticket", nil, &out); code != 200 {
		t.Fatalf("ws-ticket: HTTP %d %v", code, out)
	}
	tk, _ := out["ticket"].(string)
	if len(tk) < 32 || out["expiresIn"] != float64(30) || len(out) != 2 {
		t.Fatalf("ws-ticket answer %v, want {ticket, expiresIn: 30}", out)
	}
	return tk
}

// dialTicket opens /ws with a ticket and nothing else.
func dialTicket(t *testing.T, env *chattest.Env, tk, query string) *chattest.Client {
	t.Helper()
	q := "ticket=" + tk
	if query != "" {
		q += "&" + query
	}
	c, err := env.DialBare(q)
	if err != nil {
		t.Fatalf("dial with ticket: %v", err)
	}
	return c
}

// A ticket opens one socket, once, for the session it was issued from.
func TestWSTicket(t *testing.T) {
	env := chattest.Start(t, noLimit())
	mei, bo := env.DevLogin("mei"), env.DevLogin("bo")

	tk := ticket(t, env, mei)
	c := dialTicket(t, env, tk, "room=tickets")
	c.NextOfType("system")
	other := env.Dial(bo, "room=tickets")
	other.NextOfType("system")
	c.Send(map[string]any{"text": true, "content": "via ticket"})
	if m := other.NextOfType("remote"); m["content"] != "via ticket" || m["uid"] != mei.UserInfo["uid"] || m["nickName"] != "mei" {
		t.Fatalf("a ticket socket posts as its session's user: %v", m)
	}

	// Used, unknown, empty or a session id: refused like a bad session.
	for name, bad := range map[string]string{
		"used":       tk,
		"unknown":    strings.Repeat("ab", 32),
		"session id": mei.ID,
		"oversized":  strings.Repeat("a", 4000),
	} {
		refusedSession(t, dialTicket(t, env, bad, ""), name+" ticket")
	}
	if c, err := env.DialBare("ticket="); err != nil {
		t.Fatal(err)
	} else {
		refusedSession(t, c, "empty ticket")
	}

	// A ticket stands for its session: after a logout it opens nothing.
	boTicket := ticket(t, env, bo)
	if code := env.Do(bo, "POST", "/logout", nil, nil); code != 200 {
		t.Fatalf("logout: HTTP %d", code)
	}
	refusedSession(t, dialTicket(t, env, boTicket, ""), "ticket of a session that ended")

	// Of many sockets racing with one ticket, exactly one gets in.
	tk = ticket(t, env, mei)
	var (
		wg       sync.WaitGroup
		in, out  atomic.Int32
		dialErrs atomic.Int32
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := env.DialBare("ticket=" + tk + "&room=race")
			if err != nil {
				dialErrs.Add(1)
				return
			}
			switch m := c.Next(); {
			case m["type"] == "system":
				in.Add(1)
			case m["error"] == "ERR_INVALID_SESSION":
				out.Add(1)
			}
		}()
	}
	wg.Wait()
	if in.Load() != 1 || out.Load() != 7 || dialErrs.Load() != 0 {
		t.Fatalf("8 sockets with one ticket: %d in, %d refused, %d dial errors; want 1 and 7", in.Load(), out.Load(), dialErrs.Load())
	}

	// Tickets need a session and POST.
	if code := env.Do(chattest.Session{ID: mei.ID, Skey: "wrong"}, "POST", "/ws-ticket", nil, nil); code != 401 {
		t.Errorf("ws-ticket with a bad session: HTTP %d, want 401", code)
	}
	if code := env.Do(mei, "GET", "/ws-ticket", nil, nil); code != http.StatusMethodNotAllowed {
		t.Errorf("GET /ws-ticket: HTTP %d, want 405", code)
	}
	// The session pair still opens sockets, for the original client.
	env.Dial(mei, "room=tickets").NextOfType("system")
}

// failingSessions is the real store with session reads that fail on command.
type failingSessions struct {
	persistence.Store
	fail atomic.Bool
}

var errSessionsDown = errors.New("session store down (injected)")

func (f *failingSessions) SessionUser(id string) (persistence.Session, persistence.User, error) {
	if f.fail.Load() {
		return persistence.Session{}, persistence.User{}, errSessionsDown
	}
	return f.Store.SessionUser(id)
}

// When the session store itself fails, authenticated routes answer 503
// ERR_UNAVAILABLE, not 401: the client keeps its session and tries again.
func TestSessionStoreDownIs503(t *testing.T) {
	var fs *failingSessions
	cfg := noLimit()
	cfg.WrapStore = func(s persistence.Store) persistence.Store {
		fs = &failingSessions{Store: s}
		return fs
	}
	env := chattest.Start(t, cfg)
	s := env.DevLogin("mei")
	fs.fail.Store(true)

	for _, r := range []struct{ method, path string }{
		{"GET", "/me"}, {"POST", "/profile"}, {"GET", "/history"}, {"POST", "/logout"}, {"POST", "/ws-ticket"}, {"GET", "/login"},
	} {
		var out map[string]any
		code := env.Do(s, r.method, r.path, map[string]any{"nickName": "x"}, &out)
		if code != http.StatusServiceUnavailable || out["error"] != "ERR_UNAVAILABLE" {
			t.Errorf("%s %s with the store down: HTTP %d %v, want 503 ERR_UNAVAILABLE", r.method, r.path, code, out)
		}
	}
	code, out := env.Upload(s, "a.png", chattest.PNG(2, 2))
	if code != http.StatusServiceUnavailable || out["error"] != "ERR_UNAVAILABLE" {
		t.Errorf("upload with the store down: HTTP %d %v, want 503 ERR_UNAVAILABLE", code, out)
	}
	// A socket: the error frame says the store, not the session, failed, and the close is 1011.
	c := env.Dial(s, "")
	if m := c.Next(); m["error"] != "ERR_UNAVAILABLE" {
		t.Errorf("socket with the store down got %v, want ERR_UNAVAILABLE", m)
	}
	if code := c.Closed(); code != 1011 {
		t.Errorf("socket with the store down closed with %d, want 1011", code)
	}

	fs.fail.Store(false) // back: the same session works again
	if code := env.Do(s, "GET", "/me", nil, nil); code != 200 {
		t.Errorf("/me once the store is back: HTTP %d", code)
	}
	if code, out := env.Upload(s, "a.png", chattest.PNG(2, 2)); code != 200 {
		t.Errorf("upload once the store is back: HTTP %d %v", code, out)
	}
	if code := env.Do(chattest.Session{ID: s.ID, Skey: "wrong"}, "GET", "/me", nil, nil); code != 401 {
		t.Errorf("/me with a wrong skey: HTTP %d, want 401", code)
	}
	if code, _ := env.Upload(chattest.Session{ID: s.ID, Skey: "wrong"}, "a.png", chattest.PNG(2, 2)); code != 401 {
		t.Errorf("upload with a wrong skey: HTTP %d, want 401", code)
	}
}
