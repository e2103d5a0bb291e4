// Package wechattest is a fake WeChat login API for tests: an httptest server
// that answers /sns/jscode2session in WeChat's own shapes, and the encryption
// WeChat applies to a user's profile.
package wechattest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// Mode makes the fake misbehave the way a real WeChat can.
type Mode int

const (
	Normal       Mode = iota // answer like WeChat
	HTTP500                  // answer HTTP 500 with an HTML page
	NonJSON                  // answer HTTP 200 with an HTML page
	Hang                     // never answer, until the request is cancelled or the server closes
	NoSessionKey             // accept a known code but leave out session_key
)

// Server is a fake WeChat API. Its methods are safe for concurrent use.
type Server struct {
	URL    string // base URL for wechat.Client.BaseURL
	AppID  string
	Secret string

	done chan struct{} // closed before the server shuts down, releasing hung requests

	mu     sync.Mutex
	mode   Mode
	calls  int
	codes  map[string]*login
	fails  map[string]failure
	unions map[string]string // openid -> unionid
	gather int               // requests still to hold before the gate opens
	gate   chan struct{}     // closed when the gathered requests may be answered
}

type login struct {
	openID, sessionKey string
	used               bool
}

type failure struct {
	errcode int
	errmsg  string
}

// New starts a fake that accepts appID and secret; it closes with the test.
func New(t testing.TB, appID, secret string) *Server {
	t.Helper()
	s := &Server{
		AppID:  appID,
		Secret: secret,
		done:   make(chan struct{}),
		codes:  make(map[string]*login),
		fails:  make(map[string]failure),
		unions: make(map[string]string),
	}
	hs := httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	s.URL = hs.URL
	t.Cleanup(func() {
		close(s.done) // first: httptest's Close waits for every handler
		hs.Close()
	})
	return s
}

// AddCode makes code log in as openID once; like WeChat, a second use is
// answered with errcode 40163.
func (s *Server) AddCode(code, openID, sessionKey string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codes[code] = &login{openID: openID, sessionKey: sessionKey}
}

// FailCode makes every use of code answer errcode and errmsg.
func (s *Server) FailCode(code string, errcode int, errmsg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fails[code] = failure{errcode, errmsg}
}

// SetUnionID makes logins of openID carry unionID, as for an app bound to
// an open platform account.
func (s *Server) SetUnionID(openID, unionID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unions[openID] = unionID
}

// SetMode changes how the following requests are answered.
func (s *Server) SetMode(m Mode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mode = m
}

// Gather holds the next n requests until all n have arrived, then answers
// them together, so that n concurrent logins reach the server's store at once.
func (s *Server) Gather(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gather, s.gate = n, make(chan struct{})
}

// Calls is the number of requests to /sns/jscode2session so far.
func (s *Server) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/sns/jscode2session" {
		http.NotFound(w, r)
		return
	}
	s.mu.Lock()
	s.calls++
	mode := s.mode
	var gate chan struct{}
	if s.gather > 0 {
		s.gather--
		gate = s.gate
		if s.gather == 0 {
			close(gate)
		}
	}
	s.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		case <-s.done:
			panic(http.ErrAbortHandler)
		}
	}

	switch mode {
	case HTTP500:
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusInternalServerError)
		w.Write([]byte("<html><body>500 Internal Server Error</body></html>"))
		return
	case NonJSON:
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte("<html><body>welcome to the gateway</body></html>"))
		return
	case Hang:
		select {
		case <-r.Context().Done():
		case <-s.done:
			panic(http.ErrAbortHandler) // drop the connection, as a vanished server would
		}
		return
	}
	if r.Method != http.MethodGet {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	answer(w, s.login(r, mode))
}

// login decides the answer for a well-formed request, checking in WeChat's order.
func (s *Server) login(r *http.Request, mode Mode) map[string]any {
	q := r.URL.Query()
	switch {
	case q.Get("appid") != s.AppID:
		return fail(40013, "invalid appid")
	case q.Get("secret") != s.Secret:
		return fail(40125, "invalid appsecret")
	case q.Get("grant_type") != "authorization_code":
		return fail(40002, "invalid grant_type")
	case q.Get("js_code") == "":
		return fail(41008, "missing code")
	}
	code := q.Get("js_code")

	s.mu.Lock()
	defer s.mu.Unlock()
	if f, ok := s.fails[code]; ok {
		return fail(f.errcode, f.errmsg)
	}
	l, ok := s.codes[code]
	switch {
	case !ok:
		return fail(40029, "invalid code")
	case l.used:
		return fail(40163, "code been used")
	}
	l.used = true
	a := map[string]any{"openid": l.openID, "session_key": l.sessionKey}
	if u := s.unions[l.openID]; u != "" {
		a["unionid"] = u
	}
	if mode == NoSessionKey {
		delete(a, "session_key")
	}
	return a
}

// fail is WeChat's error shape; errmsg carries a request id, as WeChat's
// does. An empty errmsg leaves the field out.
func fail(errcode int, errmsg string) map[string]any {
	if errmsg == "" {
		return map[string]any{"errcode": errcode}
	}
	return map[string]any{"errcode": errcode, "errmsg": errmsg + ", rid: " + rid()}
}

// answer writes JSON labelled text/plain, as WeChat does.
func answer(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "text/plain")
	json.NewEncoder(w).Encode(v)
}

func rid() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}
