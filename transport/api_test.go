package transport_test

import (
	"encoding/json"
	"fmt"
	"github.com/pandachat/pandachat/persistence"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pandachat/pandachat/actors"
	"github.com/pandachat/pandachat/internal/chattest"
	"github.com/pandachat/pandachat/server"
	"github.com/pandachat/pandachat/wechat/wechattest"
)

// call sends a request with the given headers and body; it returns the status,
// the decoded JSON answer (nil when it is not JSON) and the headers.
func call(t *testing.T, env *chattest.Env, method, path string, headers map[string]string, body string) (int, map[string]any, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, env.URL+path, strings.NewReader(body))
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if json.Unmarshal(b, &m) != nil {
		m = nil
	}
	return resp.StatusCode, m, resp.Header
}

func auth(s chattest.Session) map[string]string {
	return map[string]string{"X-WX-Id": s.ID, "X-WX-Skey": s.Skey}
}

// wants fails t unless the answer has the status and the error code ("" : none).
func wants(t *testing.T, what string, status int, m map[string]any, wantStatus int, wantErr string) {
	t.Helper()
	if status != wantStatus || (wantErr != "" && m["error"] != wantErr) || (wantErr == "" && m["error"] != nil) {
		t.Errorf("%s: HTTP %d %v; want %d %s", what, status, m, wantStatus, wantErr)
	}
}

// WeChat's login, through the edge: a code makes a session, a valid id/skey
// is confirmed, a stale one is refused unless a fresh code comes with it.
func TestLoginRoute(t *testing.T) {
	const appID, secret = "wx0123456789abcdef", "app-secret"
	wx := wechattest.New(t, appID, secret)
	env := chattest.Start(t, server.Config{WXAppID: appID, WXSecret: secret, WXAPI: wx.URL, WXTimeout: 500 * time.Millisecond})
	key := wechattest.NewSessionKey()
	wx.AddCode("c1", "openid-1", key)
	wx.AddCode("c2", "openid-1", wechattest.NewSessionKey())
	wx.FailCode("bad", 40029, "invalid code")

	enc, iv := wechattest.EncryptUserInfo(key, map[string]any{"openId": "openid-1", "nickName": "Panda", "gender": 2, "city": "Chengdu", "country": "",
		"watermark": map[string]any{"appid": appID, "timestamp": time.Now().Unix()}})
	status, m, _ := call(t, env, "POST", "/login", map[string]string{"X-WX-Code": "c1", "X-WX-Encrypted-Data": enc, "X-WX-IV": iv}, "")
	wants(t, "login with a code", status, m, 200, "")
	sess, _ := m["session"].(map[string]any)
	if m[chattest.Magic] != float64(1) || sess["id"] == nil || sess["skey"] == nil {
		t.Fatalf("login answer %v", m)
	}
	// The public profile: what WeChat gave that others may see, nothing empty.
	if info, _ := m["userInfo"].(map[string]any); info["nickName"] != "Panda" || info["gender"] != float64(2) || info["city"] != "Chengdu" || info["country"] != nil || info["openId"] != nil {
		t.Errorf("userInfo %v", m["userInfo"])
	}
	good := map[string]string{"X-WX-Id": sess["id"].(string), "X-WX-Skey": sess["skey"].(string)}
	status, m, _ = call(t, env, "GET", "/login", good, "")
	if info, _ := m["userInfo"].(map[string]any); status != 200 || m["message"] != "session valid" || info["uid"] == nil {
		t.Errorf("check of a good session: HTTP %d %v", status, m)
	}
	stale := map[string]string{"X-WX-Id": good["X-WX-Id"], "X-WX-Skey": "wrong"}
	status, m, _ = call(t, env, "GET", "/login", stale, "")
	wants(t, "check of a bad skey", status, m, 401, "ERR_INVALID_SESSION")
	if m[chattest.Magic] != float64(1) {
		t.Errorf("refusal without the wafer magic key: %v", m)
	}
	stale["X-WX-Code"] = "c2"
	status, m, _ = call(t, env, "GET", "/login", stale, "")
	if sess, _ := m["session"].(map[string]any); status != 200 || sess["id"] == nil || sess["id"] == good["X-WX-Id"] {
		t.Errorf("stale session with a fresh code: HTTP %d %v, want a new session", status, m)
	}
	status, m, _ = call(t, env, "GET", "/login", nil, "")
	wants(t, "no code", status, m, 400, "ERR_LOGIN_FAILED")
	status, m, _ = call(t, env, "GET", "/login", map[string]string{"X-WX-Code": "bad"}, "")
	wants(t, "a code WeChat refuses", status, m, 401, "ERR_LOGIN_FAILED")
	wx.SetMode(wechattest.HTTP500)
	status, m, _ = call(t, env, "GET", "/login", map[string]string{"X-WX-Code": "c3"}, "")
	wants(t, "WeChat down", status, m, 502, "ERR_LOGIN_FAILED")
	status, m, h := call(t, env, "PUT", "/login", nil, "")
	wants(t, "PUT /login", status, m, 405, "ERR_LOGIN_FAILED")
	if h.Get("Allow") != "GET, POST" {
		t.Errorf("Allow: %q", h.Get("Allow"))
	}
}

// Dev logins: POST only, a nickname in JSON; a burst per address, then 429
// with the seconds until the next one.
func TestDevLoginRoute(t *testing.T) {
	env := chattest.Start(t, server.Config{DevLogin: true, DevLoginRate: actors.Rate{Messages: 3, Per: time.Minute}})
	status, m, h := call(t, env, "GET", "/login/dev", nil, "")
	wants(t, "GET /login/dev", status, m, 405, "ERR_LOGIN_FAILED")
	if h.Get("Allow") != "POST" {
		t.Errorf("Allow: %q", h.Get("Allow"))
	}
	status, m, _ = call(t, env, "POST", "/login/dev", nil, `{"nickName":`)
	wants(t, "not JSON", status, m, 400, "ERR_LOGIN_FAILED")
	status, m, _ = call(t, env, "POST", "/login/dev", nil, `{"nickName":""}`)
	wants(t, "empty nickname", status, m, 400, "ERR_LOGIN_FAILED")
	status, m, _ = call(t, env, "POST", "/login/dev", nil, `{"nickName":"panda"}`)
	if info, _ := m["userInfo"].(map[string]any); status != 200 || m[chattest.Magic] != float64(1) || info["nickName"] != "panda" {
		t.Errorf("dev login: HTTP %d %v", status, m)
	}
	status, m, h = call(t, env, "POST", "/login/dev", nil, `{"nickName":"panda"}`)
	wants(t, "fifth dev login", status, m, 429, "ERR_RATE_LIMITED")
	if h.Get("Retry-After") != "20" || !strings.Contains(fmt.Sprint(m["message"]), "20 s") {
		t.Errorf("Retry-After %q, message %v; want 20 s (3 per minute)", h.Get("Retry-After"), m["message"])
	}

	off := chattest.Start(t, server.Config{})
	if status, _, _ := call(t, off, "POST", "/login/dev", nil, `{"nickName":"panda"}`); status != 404 {
		t.Errorf("dev login when not enabled: HTTP %d, want 404", status)
	}
}

// GET /me and POST /profile: the caller's public profile, a new nickname, the
// default avatar in either form; anything else is refused as it is.
func TestProfileRoutes(t *testing.T) {
	env := devServer(t)
	s := env.DevLogin("before")
	status, m, _ := call(t, env, "GET", "/me", auth(s), "")
	if status != 200 || m["nickName"] != "before" || m["uid"] != s.UserInfo["uid"] || !strings.HasPrefix(fmt.Sprint(m["avatarUrl"]), env.URL+"/") {
		t.Fatalf("GET /me: HTTP %d %v", status, m)
	}
	status, m, _ = call(t, env, "GET", "/me", map[string]string{"X-WX-Id": s.ID, "X-WX-Skey": "x"}, "")
	wants(t, "GET /me with a bad skey", status, m, 401, "ERR_INVALID_SESSION")

	c := env.Dial(s, "room=profile")
	c.NextOfType("system")
	status, m, _ = call(t, env, "POST", "/profile", auth(s), `{"nickName":" after "}`)
	if status != 200 || m["nickName"] != "after" {
		t.Fatalf("POST /profile: HTTP %d %v", status, m)
	}
	c.Send(map[string]any{"text": true, "content": "hi"})
	if echo := c.NextOfType("user"); echo["nickName"] != "after" {
		t.Errorf("the next message carries %v, want the new nickname", echo["nickName"])
	}
	if _, m, _ = call(t, env, "GET", "/me", auth(s), ""); m["nickName"] != "after" {
		t.Errorf("GET /me after the change: %v", m)
	}
	for _, avatar := range []string{"/avatar/default.png", env.URL + "/avatar/default.png"} {
		status, m, _ = call(t, env, "POST", "/profile", auth(s), `{"avatarUrl":"`+avatar+`"}`)
		if status != 200 || m["avatarUrl"] != env.URL+"/avatar/default.png" || m["nickName"] != "after" {
			t.Errorf("default avatar %s: HTTP %d %v", avatar, status, m)
		}
	}
	_, up := env.Upload(s, "me.png", chattest.PNG(3, 3))
	url := fmt.Sprint(up["url"])
	for _, avatar := range []string{url, strings.TrimPrefix(url, env.URL)} {
		status, m, _ = call(t, env, "POST", "/profile", auth(s), `{"avatarUrl":"`+avatar+`"}`)
		if status != 200 || m["avatarUrl"] != url {
			t.Errorf("uploaded avatar %s: HTTP %d %v, want %s", avatar, status, m, url)
		}
	}
	for _, body := range []string{`{}`, `{"nickName":1}`, `not json`, `{"nickName":""}`, `{"avatarUrl":"https://elsewhere.example/a.png"}`} {
		status, m, _ = call(t, env, "POST", "/profile", auth(s), body)
		wants(t, "POST /profile "+body, status, m, 400, "ERR_BAD_REQUEST")
	}
	if _, m, _ = call(t, env, "GET", "/me", auth(s), ""); m["nickName"] != "after" {
		t.Errorf("a refused change changed the profile: %v", m)
	}
}

// Behind a trusted proxy, URLs are made with the scheme and host it forwards.
func TestForwardedBaseURL(t *testing.T) {
	env := chattest.Start(t, server.Config{DevLogin: true, TrustProxy: true})
	s := env.DevLogin("a")
	h := auth(s)
	h["X-Forwarded-Proto"], h["X-Forwarded-Host"] = "https", "chat.example.com"
	if _, m, _ := call(t, env, "GET", "/me", h, ""); !strings.HasPrefix(fmt.Sprint(m["avatarUrl"]), "https://chat.example.com/") {
		t.Errorf("avatarUrl %v, want it under https://chat.example.com/", m["avatarUrl"])
	}
}

// POST /ws-ticket gives a one-time ticket for /ws; POST /logout ends the
// session and closes its sockets. Both are POST only.
func TestTicketAndLogoutRoutes(t *testing.T) {
	env := devServer(t)
	s := env.DevLogin("a")
	for _, path := range []string{"/ws-ticket", "/logout"} {
		status, m, h := call(t, env, "GET", path, auth(s), "")
		wants(t, "GET "+path, status, m, 405, "ERR_METHOD_NOT_ALLOWED")
		if h.Get("Allow") != "POST" {
			t.Errorf("GET %s: Allow %q", path, h.Get("Allow"))
		}
		status, m, _ = call(t, env, "POST", path, map[string]string{"X-WX-Id": s.ID, "X-WX-Skey": "x"}, "")
		wants(t, "POST "+path+" with a bad skey", status, m, 401, "ERR_INVALID_SESSION")
	}
	status, m, _ := call(t, env, "POST", "/ws-ticket", auth(s), "")
	ticket, _ := m["ticket"].(string)
	if status != 200 || ticket == "" || m["expiresIn"] != float64(30) {
		t.Fatalf("POST /ws-ticket: HTTP %d %v", status, m)
	}
	c, err := env.DialBare("room=t&ticket=" + ticket)
	if err != nil {
		t.Fatal(err)
	}
	if f := c.Next(); f["type"] != "system" {
		t.Fatalf("socket opened with a ticket: %v", f)
	}
	again, err := env.DialBare("room=t&ticket=" + ticket)
	if err != nil {
		t.Fatal(err)
	}
	if f := again.Next(); f["error"] != "ERR_INVALID_SESSION" {
		t.Errorf("a ticket used twice: %v", f)
	}

	status, m, _ = call(t, env, "POST", "/logout", auth(s), "")
	if status != 200 || m["code"] != float64(0) {
		t.Fatalf("POST /logout: HTTP %d %v", status, m)
	}
	if f := c.Next(); f["error"] != "ERR_INVALID_SESSION" {
		t.Errorf("the session's socket got %v, want the session error", f)
	}
	if code := c.Closed(); code != 1008 {
		t.Errorf("the session's socket closed with %d, want 1008", code)
	}
	status, m, _ = call(t, env, "GET", "/me", auth(s), "")
	wants(t, "GET /me after logout", status, m, 401, "ERR_INVALID_SESSION")
}

// GET /rooms counts what others posted after the caller's read position (at
// most 100, its own messages not counted, mentions apart); POST /read moves
// the position forward, never past the room's last id.
func TestRoomsAndReadRoutes(t *testing.T) {
	env := devServer(t)
	a, b := env.DevLogin("a"), env.DevLogin("b")
	ca := env.Dial(a, "room=r1")
	ca.NextOfType("system")
	_ = ca.Conn.WriteClose(1000, nil)
	ca.Closed()
	// a's leave must reach the room before b posts: a leaving connection
	// marks read whatever the room stored until then.
	cb := env.Dial(b, "room=r1&v=2&presence=1")
	if sys := cb.NextOfType("system"); sys["num"] != float64(1) {
		cb.NextOfType("presence")
	}
	cb.Send(map[string]any{"text": true, "content": "@a", "mentions": []string{fmt.Sprint(a.UserInfo["uid"])}})
	for i := 0; i < 104; i++ {
		cb.Send(map[string]any{"text": true, "content": fmt.Sprint(i)})
	}
	for i := 0; i < 105; i++ {
		cb.NextOfType("user")
	}
	rooms := func(s chattest.Session) []map[string]any {
		t.Helper()
		var out []map[string]any
		if status := env.Do(s, "GET", "/rooms", nil, &out); status != 200 {
			t.Fatalf("GET /rooms: HTTP %d", status)
		}
		return out
	}
	want := func(s chattest.Session, lastID, readID, unread, mentions int) {
		t.Helper()
		got := rooms(s)
		if len(got) != 1 || got[0]["room"] != "r1" || got[0]["lastId"] != float64(lastID) || got[0]["readId"] != float64(readID) ||
			got[0]["unread"] != float64(unread) || got[0]["mentions"] != float64(mentions) {
			t.Errorf("GET /rooms: %v; want r1 last %d read %d unread %d mentions %d", got, lastID, readID, unread, mentions)
		}
	}
	want(a, 105, 0, 100, 1) // 105 unread: counted up to 100
	read := func(s chattest.Session, body string) (int, map[string]any) {
		t.Helper()
		status, m, _ := call(t, env, "POST", "/read", auth(s), body)
		return status, m
	}
	if status, m := read(a, `{"room":"r1","id":1}`); status != 200 || m["readId"] != float64(1) || m["room"] != "r1" {
		t.Errorf("POST /read 1: HTTP %d %v", status, m)
	}
	want(a, 105, 1, 100, 0)
	read(a, `{"room":"r1","id":6}`)
	want(a, 105, 6, 99, 0)
	read(a, `{"room":"r1","id":2}`) // never back
	want(a, 105, 6, 99, 0)
	if status, m := read(a, `{"room":"r1","id":1000}`); status != 200 || m["readId"] != float64(105) {
		t.Errorf("POST /read past the end: HTTP %d %v, want readId 105", status, m)
	}
	want(a, 105, 105, 0, 0)
	want(b, 105, 105, 0, 0) // connected: read up to the last id; its own messages are never unread

	for body, code := range map[string]string{`{"room":"r1"}`: "ERR_BAD_REQUEST", `{"id":1}`: "ERR_BAD_REQUEST", `{`: "ERR_BAD_REQUEST", `{"room":"r 1","id":1}`: "ERR_BAD_ROOM"} {
		status, m := read(a, body)
		wants(t, "POST /read "+body, status, m, 400, code)
	}
	status, m, _ := call(t, env, "GET", "/rooms", map[string]string{"X-WX-Id": a.ID, "X-WX-Skey": "x"}, "")
	wants(t, "GET /rooms with a bad skey", status, m, 401, "ERR_INVALID_SESSION")
}

// /healthz and /readyz answer while the server runs; an upload needs a session.
func TestHealthAndUploadSession(t *testing.T) {
	env := devServer(t)
	for _, path := range []string{"/healthz", "/readyz"} {
		status, m, h := call(t, env, "GET", path, nil, "")
		if status != 200 || (m["ok"] != true && m["ready"] != true) || !strings.HasPrefix(h.Get("Content-Type"), "application/json") || h.Get("Cache-Control") != "no-store" {
			t.Errorf("GET %s: HTTP %d %v %v", path, status, m, h)
		}
	}
	resp, err := http.Get(env.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Errorf("GET /: HTTP %d %s, want the web client", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	s := env.DevLogin("a")
	if status, m := env.Upload(s, "a.png", chattest.PNG(2, 2)); status != 200 || !strings.HasPrefix(fmt.Sprint(m["url"]), env.URL+"/media/") {
		t.Errorf("upload: HTTP %d %v", status, m)
	}
	if status, m := env.Upload(chattest.Session{ID: s.ID, Skey: "x"}, "a.png", chattest.PNG(2, 2)); status != 401 || m["error"] != "ERR_INVALID_SESSION" {
		t.Errorf("upload with a bad skey: HTTP %d %v", status, m)
	}
	if status, _, _ := call(t, env, "GET", "/upload", auth(s), ""); status != 405 {
		t.Errorf("GET /upload: HTTP %d, want 405", status)
	}
}

// GET /history: pages before an id, limits, the default room, and every bad
// parameter refused as it is.
func TestHistoryParams(t *testing.T) {
	env := devServer(t)
	s := env.DevLogin("a")
	post(t, env, s, "h", 3)
	page := func(query string) []uint64 {
		t.Helper()
		var items []chattest.Chat
		if status := env.Do(s, "GET", "/history?"+query, nil, &items); status != 200 {
			t.Fatalf("GET /history?%s: HTTP %d", query, status)
		}
		var ids []uint64
		for _, m := range items {
			ids = append(ids, m.ID)
			if m.Type != "user" { // all a's own
				t.Errorf("GET /history?%s: item %d of type %q, want user", query, m.ID, m.Type)
			}
		}
		return ids
	}
	for query, want := range map[string]string{
		"room=h": "[1 2 3]", "room=h&limit=1": "[3]", "room=h&before=3": "[1 2]", "room=h&before=3&limit=1": "[2]",
		"room=h&before=1": "[]", "room=h&v=2": "[1 2 3]", "": "[]", // the default room, empty
	} {
		if got := fmt.Sprint(page(query)); got != want {
			t.Errorf("GET /history?%s: ids %s, want %s", query, got, want)
		}
	}
	for query, code := range map[string]string{
		"room=a%20b": "ERR_BAD_ROOM", "room=h&v=3": "ERR_BAD_REQUEST", "room=h&limit=0": "ERR_BAD_REQUEST",
		"room=h&limit=-1": "ERR_BAD_REQUEST", "room=h&limit=x": "ERR_BAD_REQUEST", "room=h&before=x": "ERR_BAD_REQUEST",
		"room=h&before=-1": "ERR_BAD_REQUEST",
	} {
		status, m, _ := call(t, env, "GET", "/history?"+query, auth(s), "")
		wants(t, "GET /history?"+query, status, m, 400, code)
	}
	status, m, _ := call(t, env, "GET", "/history?room=h", map[string]string{"X-WX-Id": s.ID, "X-WX-Skey": "x"}, "")
	wants(t, "GET /history with a bad skey", status, m, 401, "ERR_INVALID_SESSION")
}

// Behind a trusted proxy, dev logins are throttled per X-Real-IP: another
// address has a burst of its own.
func TestDevLoginThrottlePerForwardedAddress(t *testing.T) {
	env := chattest.Start(t, server.Config{DevLogin: true, TrustProxy: true, DevLoginRate: actors.Rate{Messages: 1, Per: time.Minute}})
	for _, tc := range []struct {
		ip     string
		status int
	}{{"192.0.2.1", 200}, {"192.0.2.1", 429}, {"192.0.2.2", 200}, {"", 200}, {"", 429}} {
		h := map[string]string{}
		if tc.ip != "" {
			h["X-Real-IP"] = tc.ip
		}
		if status, m, _ := call(t, env, "POST", "/login/dev", h, `{"nickName":"p"}`); status != tc.status {
			t.Errorf("dev login from %q: HTTP %d %v, want %d", tc.ip, status, m, tc.status)
		}
	}
}

// A user's rooms are capped: POST /read naming yet another room is refused
// with 409, so that a client cannot grow the store (and GET /rooms) without bound.
func TestReadPositionsCappedPerUser(t *testing.T) {
	env := devServer(t)
	a := env.DevLogin("a")
	for i := range persistence.MaxReadRooms {
		if status, m, _ := call(t, env, "POST", "/read", auth(a), fmt.Sprintf(`{"room":"r%d","id":0}`, i)); status != 200 {
			t.Fatalf("POST /read of room %d: HTTP %d %v", i, status, m)
		}
	}
	status, m, _ := call(t, env, "POST", "/read", auth(a), `{"room":"one-more","id":0}`)
	wants(t, "POST /read of one room too many", status, m, 409, "ERR_TOO_MANY_ROOMS")
	if status, m, _ := call(t, env, "POST", "/read", auth(a), `{"room":"r7","id":0}`); status != 200 {
		t.Errorf("POST /read of a room of the user's: HTTP %d %v", status, m)
	}
	var out []map[string]any
	if status := env.Do(a, "GET", "/rooms", nil, &out); status != 200 || len(out) != persistence.MaxReadRooms {
		t.Errorf("GET /rooms: HTTP %d, %d rooms; want %d", status, len(out), persistence.MaxReadRooms)
	}
}
