package server_test

import (
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pandachat/pandachat/internal/chattest"
	"github.com/pandachat/pandachat/server"
	"github.com/pandachat/pandachat/wechat/wechattest"
)

const (
	appID  = "wx0123456789abcdef"
	secret = "s3cr3t+/app-secret"
)

func wechatEnv(t *testing.T) (*chattest.Env, *wechattest.Server) {
	wx := wechattest.New(t, appID, secret)
	env := chattest.Start(t, server.Config{WXAppID: appID, WXSecret: secret, WXAPI: wx.URL, WXTimeout: 500 * time.Millisecond})
	return env, wx
}

// login sends GET /login with the given headers; it returns status and decoded body.
func login(t *testing.T, env *chattest.Env, headers map[string]string, query string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("GET", env.URL+"/login"+query, nil)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("login answer is not JSON: %s", b)
	}
	return resp.StatusCode, m
}

func sessionOf(t *testing.T, m map[string]any) chattest.Session {
	t.Helper()
	if m[chattest.Magic] != float64(1) {
		t.Fatalf("answer lacks the wafer magic key: %v", m)
	}
	s, _ := m["session"].(map[string]any)
	id, _ := s["id"].(string)
	skey, _ := s["skey"].(string)
	if len(id) != 64 || skey == "" {
		t.Fatalf("bad session in %v", m)
	}
	ui, _ := m["userInfo"].(map[string]any)
	return chattest.Session{ID: id, Skey: skey, UserInfo: ui}
}

// The original client: code + encrypted profile, then chat with the session in headers and query.
func TestOriginalClientFlow(t *testing.T) {
	env, wx := wechatEnv(t)
	keyA, keyB := wechattest.NewSessionKey(), wechattest.NewSessionKey()
	wx.AddCode("codeA", "openid-A", keyA)
	wx.AddCode("codeB", "openid-B", keyB)
	profile := func(openID, nick string) map[string]any {
		return map[string]any{"openId": openID, "nickName": nick, "avatarUrl": "https://wx.qlogo.cn/" + nick, "gender": 1,
			"city": "Chengdu", "watermark": map[string]any{"appid": appID, "timestamp": time.Now().Unix()}}
	}
	encA, ivA := wechattest.EncryptUserInfo(keyA, profile("openid-A", "Alice"))
	status, ans := login(t, env, map[string]string{"X-WX-Code": "codeA", "X-WX-Encrypted-Data": encA, "X-WX-IV": ivA}, "")
	if status != 200 {
		t.Fatalf("login: %d %v", status, ans)
	}
	a := sessionOf(t, ans)
	sum := sha1.Sum([]byte(appID + secret + keyA))
	if a.Skey != hex.EncodeToString(sum[:]) {
		t.Errorf("skey is not sha1(appId+secret+session_key)")
	}
	if a.UserInfo["nickName"] != "Alice" || a.UserInfo["avatarUrl"] != "https://wx.qlogo.cn/Alice" {
		t.Errorf("userInfo = %v", a.UserInfo)
	}
	for _, private := range []string{"openId", "unionId", "session_key", "sessionKey", "watermark"} {
		if _, ok := a.UserInfo[private]; ok {
			t.Errorf("userInfo leaks %s", private)
		}
	}
	encB, ivB := wechattest.EncryptUserInfo(keyB, profile("openid-B", "Bob"))
	_, ansB := login(t, env, map[string]string{"X-WX-Code": "codeB", "X-WX-Encrypted-Data": encB, "X-WX-IV": ivB}, "")
	b := sessionOf(t, ansB)

	// Joins are asynchronous: wait for each system frame before the next dial.
	ca := env.Dial(a, "")
	if n := ca.NextChat(); n.Type != "system" || n.Num != 1 {
		t.Fatalf("first frame %+v, want system num 1", n)
	}
	ca2 := env.Dial(a, "")
	if n := ca2.NextChat(); n.Type != "system" || n.Num != 2 {
		t.Fatalf("second connection: %+v, want system num 2", n)
	}
	cb := env.Dial(b, "")
	if n := cb.NextChat(); n.Type != "system" || n.Num != 3 {
		t.Fatalf("third connection: %+v, want system num 3", n)
	}
	ca.SendRaw(1, []byte(`{"content":"hi","text":true}`))
	for _, c := range []*chattest.Client{ca, ca2} {
		m := c.NextChat()
		if m.Type != "user" || m.ID != 1 || m.Content != "hi" || !m.Text || m.NickName != "Alice" || m.AvatarURL != "https://wx.qlogo.cn/Alice" || m.Number != 3 {
			t.Errorf("sender's connection got %+v", m)
		}
	}
	m := cb.NextChat()
	if m.Type != "remote" || m.ID != 1 || m.Content != "hi" || m.NickName != "Alice" || m.UID == "" || m.UID == "openid-A" || m.Time == 0 {
		t.Errorf("other user got %+v", m)
	}
	// A gallery message naming an uploaded image by its media path.
	url := uploadPNG(t, env, b)
	cb.Send(map[string]any{"url": url, "gallery": true})
	got := ca.NextChat()
	if got.Type != "remote" || !got.Gallery || got.URL != url || got.NickName != "Bob" || got.ID != 2 {
		t.Errorf("gallery as remote: %+v", got)
	}
	if got := cb.NextChat(); got.Type != "user" || got.URL != url {
		t.Errorf("gallery as user: %+v", got)
	}
}

func TestCodeOnlyLoginAndCheck(t *testing.T) {
	env, wx := wechatEnv(t)
	wx.AddCode("c1", "openid-1", wechattest.NewSessionKey())
	wx.AddCode("c2", "openid-1", wechattest.NewSessionKey())
	status, ans := login(t, env, map[string]string{"X-WX-Code": "c1"}, "")
	if status != 200 {
		t.Fatalf("code-only login: %d %v", status, ans)
	}
	s := sessionOf(t, ans)
	if s.UserInfo["nickName"] == "" || !strings.HasPrefix(s.UserInfo["avatarUrl"].(string), env.URL+"/") {
		t.Errorf("default profile should have a nickname and an absolute avatar: %v", s.UserInfo)
	}
	// The same openId logs in again: same uid.
	_, ans2 := login(t, env, nil, "?x-wx-code=c2") // query, lower-case name
	if s2 := sessionOf(t, ans2); s2.UserInfo["uid"] != s.UserInfo["uid"] || s2.ID == s.ID {
		t.Errorf("second login: uid %v vs %v, ids equal %v", s2.UserInfo["uid"], s.UserInfo["uid"], s2.ID == s.ID)
	}
	status, ans = login(t, env, map[string]string{"X-WX-Id": s.ID, "X-WX-Skey": s.Skey}, "")
	if status != 200 || ans["code"] != float64(0) {
		t.Errorf("valid id+skey: %d %v", status, ans)
	}
	status, ans = login(t, env, nil, "?X-WX-ID="+s.ID+"&X-WX-SKEY="+s.Skey)
	if status != 200 || ans["code"] != float64(0) {
		t.Errorf("valid id+skey in query: %d %v", status, ans)
	}
	status, ans = login(t, env, map[string]string{"X-WX-Id": s.ID, "X-WX-Skey": "wrong"}, "")
	if status != 401 || ans["error"] != "ERR_INVALID_SESSION" || ans[chattest.Magic] != float64(1) {
		t.Errorf("wrong skey: %d %v", status, ans)
	}
	status, ans = login(t, env, nil, "")
	if status != 400 || ans["error"] != "ERR_LOGIN_FAILED" || ans["message"] != "missing X-WX-Code" {
		t.Errorf("no code: %d %v", status, ans)
	}
}

func TestSessionExpires(t *testing.T) {
	env := chattest.Start(t, server.Config{DevLogin: true, SessionTTL: time.Second})
	s := env.DevLogin("brief")
	deadline := time.Now().Add(chattest.Wait)
	for {
		status, ans := login(t, env, map[string]string{"X-WX-Id": s.ID, "X-WX-Skey": s.Skey}, "")
		if status == 401 && ans["error"] == "ERR_INVALID_SESSION" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("session still valid after its lifetime: %d %v", status, ans)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestWeChatFailures(t *testing.T) {
	env, wx := wechatEnv(t)
	wx.FailCode("bad", 40029, "invalid code")
	wx.FailCode("risky", 40226, "high risk user")
	key := wechattest.NewSessionKey()
	wrongApp, wrongIV := wechattest.EncryptUserInfo(key, map[string]any{"openId": "o", "nickName": "x", "watermark": map[string]any{"appid": "wxOTHER"}})
	rows := []struct {
		name    string
		mode    wechattest.Mode
		headers map[string]string
		status  int
		inMsg   string
	}{
		{"invalid code", wechattest.Normal, map[string]string{"X-WX-Code": "bad"}, 401, "40029"},
		{"high risk", wechattest.Normal, map[string]string{"X-WX-Code": "risky"}, 401, "40226"},
		{"http 500", wechattest.HTTP500, map[string]string{"X-WX-Code": "ok1"}, 502, "500"},
		{"non-JSON", wechattest.NonJSON, map[string]string{"X-WX-Code": "ok2"}, 502, "non-JSON"},
		{"hang", wechattest.Hang, map[string]string{"X-WX-Code": "ok3"}, 502, "timeout"},
		{"no session_key", wechattest.NoSessionKey, map[string]string{"X-WX-Code": "ok4"}, 502, "session_key"},
		{"wrong watermark", wechattest.Normal, map[string]string{"X-WX-Code": "ok5", "X-WX-Encrypted-Data": wrongApp, "X-WX-IV": wrongIV}, 401, "watermark"},
		{"bad base64", wechattest.Normal, map[string]string{"X-WX-Code": "ok6", "X-WX-Encrypted-Data": "%%%not base64", "X-WX-IV": wrongIV}, 401, "base64"},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			wx.SetMode(r.mode)
			wx.AddCode(r.headers["X-WX-Code"], "openid-"+r.name, key)
			status, ans := login(t, env, r.headers, "")
			msg, _ := ans["message"].(string)
			if status != r.status || ans["error"] != "ERR_LOGIN_FAILED" || ans[chattest.Magic] != float64(1) || !strings.Contains(msg, r.inMsg) {
				t.Errorf("got %d %v; want %d ERR_LOGIN_FAILED mentioning %q", status, ans, r.status, r.inMsg)
			}
			if strings.Contains(msg, secret) || strings.Contains(msg, key) {
				t.Errorf("message leaks a secret: %q", msg)
			}
		})
	}
}

func TestDevLogin(t *testing.T) {
	on := chattest.Start(t, server.Config{DevLogin: true})
	s := on.DevLogin("  Mei  ")
	if s.UserInfo["nickName"] != "Mei" {
		t.Errorf("nickname not trimmed: %v", s.UserInfo)
	}
	for _, body := range []string{`{"nickName":""}`, `{"nickName":"` + strings.Repeat("x", 33) + `"}`, `not json`} {
		resp, err := http.Post(on.URL+"/login/dev", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("dev login %s: HTTP %d, want 400", body, resp.StatusCode)
		}
	}
	off := chattest.Start(t, server.Config{DevLogin: false})
	resp, err := http.Post(off.URL+"/login/dev", "application/json", strings.NewReader(`{"nickName":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("dev login off: HTTP %d, want 404", resp.StatusCode)
	}
}

// Code logins waiting for WeChat are bounded: one more than the bound is
// answered 503 with Retry-After at once, without a call to WeChat; the
// waiting ones complete when WeChat answers.
func TestCodeLoginsInFlightAreBounded(t *testing.T) {
	wx := wechattest.New(t, appID, secret)
	env := chattest.Start(t, server.Config{WXAppID: appID, WXSecret: secret, WXAPI: wx.URL, WXTimeout: time.Minute})
	const inFlight = 64
	wx.Gather(inFlight + 1) // holds every call until one more than the bound has come
	results := make(chan int, inFlight)
	for i := range inFlight {
		code := fmt.Sprint("code", i)
		wx.AddCode(code, fmt.Sprint("openid-", i), wechattest.NewSessionKey())
		go func() {
			status, _ := loginQuiet(env, map[string]string{"X-WX-Code": code})
			results <- status
		}()
	}
	deadline := time.Now().Add(chattest.Wait)
	for wx.Calls() < inFlight {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d logins reached WeChat", wx.Calls(), inFlight)
		}
		time.Sleep(10 * time.Millisecond)
	}
	req, _ := http.NewRequest("GET", env.URL+"/login", nil)
	req.Header.Set("X-WX-Code", "one-more")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" || wx.Calls() != inFlight {
		t.Errorf("one login more than the bound: HTTP %d, Retry-After %q, %d calls to WeChat; want 503, 1, %d", resp.StatusCode, resp.Header.Get("Retry-After"), wx.Calls(), inFlight)
	}
	// One more call opens WeChat's gate: every waiting login completes.
	if r, err := http.Get(wx.URL + "/sns/jscode2session?appid=x&secret=y&js_code=z&grant_type=authorization_code"); err == nil {
		r.Body.Close()
	}
	for range inFlight {
		if status := <-results; status != 200 {
			t.Errorf("a waiting login got HTTP %d, want 200", status)
		}
	}
}

// loginQuiet is login for other goroutines: it reports the status only.
func loginQuiet(env *chattest.Env, headers map[string]string) (int, error) {
	req, _ := http.NewRequest("GET", env.URL+"/login", nil)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
