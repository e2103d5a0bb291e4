package wechat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DefaultBaseURL is the WeChat API; tests point Client.BaseURL at a fake.
const DefaultBaseURL = "https://api.weixin.qq.com"

// DefaultTimeout bounds a call when Client.Timeout is zero.
const DefaultTimeout = 5 * time.Second

const (
	maxBody   = 64 << 10 // a real answer is a few hundred bytes
	maxErrMsg = 200      // WeChat's errmsg is quoted into our message, bounded
)

// Client calls the mini-program login API. Only AppID and Secret are
// required; the other fields work as zero values. It is safe for concurrent use.
type Client struct {
	BaseURL    string       // default DefaultBaseURL
	AppID      string       // the mini-program's appid
	Secret     string       // the app secret: sent to WeChat only, never in an error
	HTTPClient *http.Client // default: a client that does not follow redirects
	// Timeout bounds the whole call, reading the answer included, whatever
	// HTTPClient is. Zero means DefaultTimeout; negative means only ctx bounds it.
	Timeout time.Duration
}

// Session is what WeChat says about a login code.
type Session struct {
	OpenID     string
	SessionKey string // decrypts the user's data: keep it server-side, never log it
	UnionID    string // empty unless the app is bound to an open platform account
}

// defaultHTTPClient does not follow redirects: that would carry the secret in
// the query to wherever Location points.
var defaultHTTPClient = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// errTimeout marks the expiry of Client.Timeout, as opposed to the caller's ctx.
var errTimeout = errors.New("wechat: timeout")

// Code2Session trades the code from wx.login for the user's openid and
// session_key. Each code works once. Every error is an *Error.
func (c *Client) Code2Session(ctx context.Context, code string) (Session, error) {
	if code == "" {
		return Session{}, refused(0, "missing login code")
	}
	if c.AppID == "" || c.Secret == "" {
		return Session{}, broken(0, "WeChat appid or secret not configured")
	}
	u, err := url.Parse(c.baseURL())
	if err != nil || u.Scheme == "" || u.Host == "" {
		return Session{}, broken(0, "bad WeChat API URL")
	}
	u = u.JoinPath("sns", "jscode2session")
	u.RawQuery = url.Values{
		"appid":      {c.AppID},
		"secret":     {c.Secret},
		"js_code":    {code},
		"grant_type": {"authorization_code"},
	}.Encode()

	parent := ctx
	timeout := c.timeout()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, timeout, errTimeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return Session{}, broken(0, "cannot build the WeChat request")
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return Session{}, c.unreachable(parent, ctx, timeout, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return Session{}, c.unreachable(parent, ctx, timeout, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return Session{}, broken(0, "WeChat answered HTTP %d", resp.StatusCode)
	}
	if len(body) > maxBody {
		return Session{}, broken(0, "WeChat answered an oversized body")
	}
	return c.parse(body)
}

// parse reads an answer; WeChat often labels it text/plain, so the
// Content-Type is not checked.
func (c *Client) parse(body []byte) (Session, error) {
	var r struct {
		OpenID     string `json:"openid"`
		SessionKey string `json:"session_key"`
		UnionID    string `json:"unionid"`
		ErrCode    int    `json:"errcode"`
		ErrMsg     string `json:"errmsg"`
	}
	if !json.Valid(body) {
		return Session{}, broken(0, "WeChat answered non-JSON body")
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return Session{}, broken(0, "WeChat answered JSON of an unexpected shape")
	}
	switch {
	case r.ErrCode == -1: // "system busy": WeChat's trouble, not the user's
		return Session{}, broken(r.ErrCode, "WeChat busy: %s", c.errcode(r.ErrCode, r.ErrMsg))
	case r.ErrCode != 0:
		return Session{}, refused(r.ErrCode, "WeChat refused the login: %s", c.errcode(r.ErrCode, r.ErrMsg))
	case r.SessionKey == "":
		return Session{}, broken(0, "WeChat answered without session_key")
	case r.OpenID == "":
		return Session{}, broken(0, "WeChat answered without openid")
	}
	return Session{OpenID: r.OpenID, SessionKey: r.SessionKey, UnionID: r.UnionID}, nil
}

func (c *Client) errcode(code int, msg string) string {
	msg = strings.TrimSpace(msg)
	if msg == "" {
		return fmt.Sprintf("errcode %d", code)
	}
	if len(msg) > maxErrMsg {
		msg = msg[:maxErrMsg] + "..."
	}
	return fmt.Sprintf("errcode %d (%s)", code, c.scrub(strings.ToValidUTF8(msg, "\uFFFD")))
}

// unreachable describes a failed exchange in our own words: the *url.Error
// from net/http quotes the request URL, secret included.
func (c *Client) unreachable(parent, ctx context.Context, timeout time.Duration, err error) *Error {
	var ne net.Error
	switch {
	case context.Cause(ctx) == errTimeout:
		e := broken(0, "WeChat unreachable: timeout after %v", timeout)
		e.err = context.DeadlineExceeded
		return e
	case parent.Err() != nil:
		e := broken(0, "WeChat unreachable: %v", parent.Err())
		e.err = parent.Err()
		return e
	case errors.As(err, &ne) && ne.Timeout():
		return broken(0, "WeChat unreachable: timeout")
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return broken(0, "WeChat unreachable: %s", c.scrub(err.Error()))
}

// scrub removes the secret from text that did not come from us, in case
// anything down the stack ever quotes the URL.
func (c *Client) scrub(s string) string {
	if c.Secret == "" {
		return s
	}
	s = strings.ReplaceAll(s, c.Secret, "[secret]")
	return strings.ReplaceAll(s, url.QueryEscape(c.Secret), "[secret]")
}

func (c *Client) baseURL() string {
	if c.BaseURL == "" {
		return DefaultBaseURL
	}
	return c.BaseURL
}

func (c *Client) timeout() time.Duration {
	if c.Timeout == 0 {
		return DefaultTimeout
	}
	return c.Timeout
}

func (c *Client) httpClient() *http.Client {
	if c.HTTPClient == nil {
		return defaultHTTPClient
	}
	return c.HTTPClient
}
