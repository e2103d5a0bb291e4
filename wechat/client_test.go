package wechat_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pandachat/pandachat/wechat"
	"github.com/pandachat/pandachat/wechat/wechattest"
)

const (
	appID  = "wx0123456789abcdef"
	secret = "S3cr3t+app/secret-0xDEADBEEF"
)

func newClient(t *testing.T) (*wechat.Client, *wechattest.Server) {
	t.Helper()
	fake := wechattest.New(t, appID, secret)
	return &wechat.Client{BaseURL: fake.URL, AppID: appID, Secret: secret}, fake
}

// asError returns err as *wechat.Error, failing the test when it is anything else.
func asError(t *testing.T, err error) *wechat.Error {
	t.Helper()
	var e *wechat.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not *wechat.Error", err, err)
	}
	if strings.Contains(e.Error(), secret) || strings.Contains(e.Msg, secret) {
		t.Fatalf("error text carries the secret: %q", e.Error())
	}
	return e
}

func TestCode2SessionSuccess(t *testing.T) {
	c, fake := newClient(t)
	key := wechattest.NewSessionKey()
	fake.AddCode("code-plain", "o-plain", key)
	fake.AddCode("code-union", "o-union", key)
	fake.SetUnionID("o-union", "u-union")

	for _, tt := range []struct {
		code string
		want wechat.Session
	}{
		{"code-plain", wechat.Session{OpenID: "o-plain", SessionKey: key}},
		{"code-union", wechat.Session{OpenID: "o-union", SessionKey: key, UnionID: "u-union"}},
	} {
		got, err := c.Code2Session(context.Background(), tt.code)
		if err != nil {
			t.Fatalf("%s: %v", tt.code, err)
		}
		if got != tt.want {
			t.Errorf("%s: got %+v, want %+v", tt.code, got, tt.want)
		}
	}
}

func TestCode2SessionErrors(t *testing.T) {
	key := wechattest.NewSessionKey()
	for _, tt := range []struct {
		name    string
		client  func(c *wechat.Client)
		setup   func(s *wechattest.Server)
		code    string
		refused bool
		errcode int
		msg     string // a part of Msg
		calls   int    // requests the fake must have seen
	}{
		{name: "invalid code", code: "nope", refused: true, errcode: 40029, msg: "errcode 40029 (invalid code", calls: 1},
		{name: "high risk user", code: "risky", refused: true, errcode: 40226, msg: "errcode 40226",
			setup: func(s *wechattest.Server) { s.FailCode("risky", 40226, "invalid scope") }, calls: 1},
		{name: "rate limited", code: "fast", refused: true, errcode: 45011, msg: "errcode 45011",
			setup: func(s *wechattest.Server) { s.FailCode("fast", 45011, "api minute-quota reach limit") }, calls: 1},
		{name: "system busy", code: "busy", refused: false, errcode: -1, msg: "errcode -1 (system error",
			setup: func(s *wechattest.Server) { s.FailCode("busy", -1, "system error") }, calls: 1},
		{name: "errcode without errmsg", code: "bare", refused: true, errcode: 40001, msg: "errcode 40001",
			setup: func(s *wechattest.Server) { s.FailCode("bare", 40001, "") }, calls: 1},
		{name: "wrong appid", code: "c", refused: true, errcode: 40013, msg: "invalid appid",
			client: func(c *wechat.Client) { c.AppID = "wx-other" }, calls: 1},
		{name: "wrong secret", code: "c", refused: true, errcode: 40125, msg: "invalid appsecret",
			client: func(c *wechat.Client) { c.Secret = secret + "x" }, calls: 1},
		{name: "empty code", code: "", refused: true, msg: "missing login code", calls: 0},
		{name: "no secret configured", code: "c", refused: false, msg: "not configured",
			client: func(c *wechat.Client) { c.Secret = "" }, calls: 0},
		{name: "bad base URL", code: "c", refused: false, msg: "bad WeChat API URL",
			client: func(c *wechat.Client) { c.BaseURL = "::not a url" }, calls: 0},
		{name: "HTTP 500", code: "c", refused: false, msg: "WeChat answered HTTP 500",
			setup: func(s *wechattest.Server) { s.SetMode(wechattest.HTTP500) }, calls: 1},
		{name: "non-JSON", code: "c", refused: false, msg: "WeChat answered non-JSON body",
			setup: func(s *wechattest.Server) { s.SetMode(wechattest.NonJSON) }, calls: 1},
		{name: "no session_key", code: "c", refused: false, msg: "WeChat answered without session_key",
			setup: func(s *wechattest.Server) {
				s.AddCode("c", "o-1", key)
				s.SetMode(wechattest.NoSessionKey)
			}, calls: 1},
		{name: "hang past Timeout", code: "c", refused: false, msg: "WeChat unreachable: timeout after 200ms",
			client: func(c *wechat.Client) { c.Timeout = 200 * time.Millisecond },
			setup:  func(s *wechattest.Server) { s.SetMode(wechattest.Hang) }, calls: 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, fake := newClient(t)
			if tt.client != nil {
				tt.client(c)
			}
			if tt.setup != nil {
				tt.setup(fake)
			}
			s, err := c.Code2Session(context.Background(), tt.code)
			if err == nil {
				t.Fatalf("got %+v, want an error", s)
			}
			e := asError(t, err)
			t.Log(e)
			if e.Refused != tt.refused || e.Code != tt.errcode || !strings.Contains(e.Msg, tt.msg) {
				t.Errorf("got %#v, want Refused=%v Code=%d Msg containing %q", e, tt.refused, tt.errcode, tt.msg)
			}
			if n := fake.Calls(); n != tt.calls {
				t.Errorf("fake saw %d calls, want %d", n, tt.calls)
			}
		})
	}
}

func TestCode2SessionCodeWorksOnce(t *testing.T) {
	c, fake := newClient(t)
	fake.AddCode("once", "o-1", wechattest.NewSessionKey())
	if _, err := c.Code2Session(context.Background(), "once"); err != nil {
		t.Fatal(err)
	}
	_, err := c.Code2Session(context.Background(), "once")
	if e := asError(t, err); !e.Refused || e.Code != 40163 {
		t.Fatalf("second use: got %#v, want refused errcode 40163", e)
	}
}

func TestCode2SessionCancel(t *testing.T) {
	c, fake := newClient(t)
	fake.SetMode(wechattest.Hang)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := c.Code2Session(ctx, "c")
		errc <- err
	}()
	for fake.Calls() == 0 { // cancel only once the request is in flight
		time.Sleep(time.Millisecond)
	}
	cancel()
	e := asError(t, <-errc)
	if e.Refused || !errors.Is(e, context.Canceled) || !strings.Contains(e.Msg, "canceled") {
		t.Fatalf("got %#v, want not refused, wrapping context.Canceled", e)
	}
}

func TestCode2SessionCallerDeadline(t *testing.T) {
	c, fake := newClient(t)
	fake.SetMode(wechattest.Hang)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := c.Code2Session(ctx, "c")
	e := asError(t, err)
	if e.Refused || !errors.Is(e, context.DeadlineExceeded) || !strings.Contains(e.Msg, "deadline exceeded") {
		t.Fatalf("got %#v, want not refused, wrapping context.DeadlineExceeded", e)
	}
}

func TestCode2SessionUnreachable(t *testing.T) {
	dead := httptest.NewServer(nil)
	dead.Close()
	c := &wechat.Client{BaseURL: dead.URL, AppID: appID, Secret: secret}
	_, err := c.Code2Session(context.Background(), "c")
	e := asError(t, err)
	t.Log(e)
	if e.Refused || !strings.HasPrefix(e.Msg, "WeChat unreachable: ") {
		t.Fatalf("got %#v, want not refused, unreachable", e)
	}
	if strings.Contains(e.Msg, "jscode2session") || strings.Contains(e.Msg, "secret=") {
		t.Fatalf("error quotes the request URL: %q", e.Msg)
	}
}

func TestCode2SessionDoesNotFollowRedirects(t *testing.T) {
	var followed atomic.Bool
	elsewhere := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { followed.Store(true) }))
	defer elsewhere.Close()
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+r.URL.RequestURI(), http.StatusFound)
	}))
	defer redirect.Close()

	c := &wechat.Client{BaseURL: redirect.URL, AppID: appID, Secret: secret}
	_, err := c.Code2Session(context.Background(), "c")
	if e := asError(t, err); e.Refused || e.Msg != "WeChat answered HTTP 302" {
		t.Fatalf("got %#v, want not refused, HTTP 302", e)
	}
	if followed.Load() {
		t.Fatal("the redirect was followed, carrying the secret along")
	}
}
