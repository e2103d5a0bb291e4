package wechattest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pandachat/pandachat/wechat/wechattest"
)

const (
	appID  = "wx-app"
	secret = "app-secret"
)

// get asks the fake like a client would and returns status, Content-Type and JSON body.
func get(t *testing.T, method, u string) (int, string, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var m map[string]any
	json.Unmarshal(body, &m)
	return resp.StatusCode, resp.Header.Get("Content-Type"), m
}

func query(app, sec, code, grant string) string {
	return "/sns/jscode2session?" + url.Values{
		"appid": {app}, "secret": {sec}, "js_code": {code}, "grant_type": {grant},
	}.Encode()
}

func TestServerAnswers(t *testing.T) {
	s := wechattest.New(t, appID, secret)
	s.AddCode("good", "o-1", "a2V5LWtleS1rZXkta2V5LQ==")
	s.SetUnionID("o-1", "u-1")
	s.FailCode("risky", 40226, "invalid scope")

	for _, tt := range []struct {
		name    string
		method  string
		path    string
		status  int
		errcode float64 // 0: a login
		openid  string
	}{
		{"login", "GET", query(appID, secret, "good", "authorization_code"), 200, 0, "o-1"},
		{"code reused", "GET", query(appID, secret, "good", "authorization_code"), 200, 40163, ""},
		{"unknown code", "GET", query(appID, secret, "nope", "authorization_code"), 200, 40029, ""},
		{"failing code", "GET", query(appID, secret, "risky", "authorization_code"), 200, 40226, ""},
		{"wrong appid", "GET", query("wx-other", secret, "good", "authorization_code"), 200, 40013, ""},
		{"wrong secret", "GET", query(appID, "guess", "good", "authorization_code"), 200, 40125, ""},
		{"wrong grant_type", "GET", query(appID, secret, "good", "client_credential"), 200, 40002, ""},
		{"no code", "GET", query(appID, secret, "", "authorization_code"), 200, 41008, ""},
		{"POST", "POST", query(appID, secret, "good", "authorization_code"), 405, 0, ""},
		{"other path", "GET", "/cgi-bin/token", 404, 0, ""},
	} {
		status, ctype, m := get(t, tt.method, s.URL+tt.path)
		if status != tt.status {
			t.Errorf("%s: HTTP %d, want %d", tt.name, status, tt.status)
			continue
		}
		if status != 200 {
			continue
		}
		if ctype != "text/plain" {
			t.Errorf("%s: Content-Type %q, want WeChat's text/plain", tt.name, ctype)
		}
		if got, _ := m["errcode"].(float64); got != tt.errcode {
			t.Errorf("%s: errcode %v, want %v (%v)", tt.name, got, tt.errcode, m)
		}
		if tt.errcode != 0 && !strings.Contains(m["errmsg"].(string), "rid: ") {
			t.Errorf("%s: errmsg %q has no rid", tt.name, m["errmsg"])
		}
		if tt.openid != "" && (m["openid"] != tt.openid || m["unionid"] != "u-1" || m["session_key"] == nil) {
			t.Errorf("%s: got %v, want openid %s with unionid and session_key", tt.name, m, tt.openid)
		}
	}
	if n := s.Calls(); n != 9 {
		t.Errorf("Calls() = %d, want 9", n)
	}
}

func TestServerModes(t *testing.T) {
	for _, tt := range []struct {
		mode   wechattest.Mode
		status int
		json   bool
	}{
		{wechattest.HTTP500, 500, false},
		{wechattest.NonJSON, 200, false},
		{wechattest.NoSessionKey, 200, true},
	} {
		s := wechattest.New(t, appID, secret)
		s.AddCode("c", "o-1", wechattest.NewSessionKey())
		s.SetMode(tt.mode)
		status, _, m := get(t, "GET", s.URL+query(appID, secret, "c", "authorization_code"))
		if status != tt.status || (m != nil) != tt.json {
			t.Errorf("mode %d: HTTP %d, JSON %v; want %d, JSON %v", tt.mode, status, m, tt.status, tt.json)
		}
		if tt.json && (m["openid"] != "o-1" || m["session_key"] != nil) {
			t.Errorf("mode %d: got %v, want openid without session_key", tt.mode, m)
		}
	}
}

// TestServerHangEndsWithTest: a hung request is released when the fake closes,
// so no handler or client outlives the test that used it.
func TestServerHangEndsWithTest(t *testing.T) {
	errc := make(chan error, 1)
	t.Run("hang", func(t *testing.T) {
		s := wechattest.New(t, appID, secret)
		s.SetMode(wechattest.Hang)
		go func() {
			resp, err := http.Get(s.URL + query(appID, secret, "c", "authorization_code"))
			if err == nil {
				resp.Body.Close()
			}
			errc <- err
		}()
		for s.Calls() == 0 {
			time.Sleep(time.Millisecond)
		}
	}) // the fake's Cleanup runs here
	if err := <-errc; err == nil {
		t.Fatal("a hung request got an answer; want the connection dropped")
	}
}

// Gather answers nothing until the n-th request has come, then all of them.
func TestServerGather(t *testing.T) {
	wx := wechattest.New(t, appID, secret)
	wx.AddCode("a", "o-a", wechattest.NewSessionKey())
	wx.AddCode("b", "o-b", wechattest.NewSessionKey())
	wx.Gather(2)
	got := make(chan int, 2)
	go func() { s, _, _ := get(t, "GET", wx.URL+query(appID, secret, "a", "authorization_code")); got <- s }()
	select {
	case s := <-got:
		t.Fatalf("the first request was answered (HTTP %d) before the second came", s)
	case <-time.After(200 * time.Millisecond):
	}
	go func() { s, _, _ := get(t, "GET", wx.URL+query(appID, secret, "b", "authorization_code")); got <- s }()
	for range 2 {
		select {
		case s := <-got:
			if s != 200 {
				t.Errorf("HTTP %d", s)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("gathered requests not answered")
		}
	}
	// Later requests are answered at once.
	wx.AddCode("c", "o-c", wechattest.NewSessionKey())
	if s, _, m := get(t, "GET", wx.URL+query(appID, secret, "c", "authorization_code")); s != 200 || m["openid"] != "o-c" {
		t.Errorf("after the gather: HTTP %d %v", s, m)
	}
}
