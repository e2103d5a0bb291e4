package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pandachat/pandachat/actors"
	"github.com/pandachat/pandachat/internal/chattest"
	"github.com/pandachat/pandachat/server"
)

// devLogin posts a dev login with extra headers; it returns status, body and Retry-After.
func devLogin(t *testing.T, env *chattest.Env, nick string, h map[string]string) (int, map[string]any, string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"nickName": nick})
	req, _ := http.NewRequest("POST", env.URL+"/login/dev", strings.NewReader(string(body)))
	for k, v := range h {
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
		t.Fatalf("dev login answer is not JSON: HTTP %d %s", resp.StatusCode, b)
	}
	return resp.StatusCode, m, resp.Header.Get("Retry-After")
}

// Dev logins are throttled per client address: a burst, then one per interval;
// beyond it 429 with the wafer error shape and Retry-After.
func TestDevLoginThrottle(t *testing.T) {
	env := chattest.Start(t, server.Config{DevLogin: true, DevLoginRate: actors.Rate{Messages: 10, Per: time.Minute}})
	for i := range 10 {
		if code, m, _ := devLogin(t, env, "burst", nil); code != 200 {
			t.Fatalf("login %d of the burst: HTTP %d %v", i+1, code, m)
		}
	}
	code, m, retry := devLogin(t, env, "one too many", nil)
	if code != http.StatusTooManyRequests || m[chattest.Magic] != float64(1) || m["error"] != "ERR_RATE_LIMITED" || m["message"] == "" {
		t.Fatalf("11th login: HTTP %d %v, want 429 {MAGIC:1, error: ERR_RATE_LIMITED, message}", code, m)
	}
	if s, err := strconv.Atoi(retry); err != nil || s < 1 || s > 6 {
		t.Fatalf("Retry-After %q, want 1 to 6 seconds (one login per 6 s)", retry)
	}
	// Without --trust-proxy a forwarded address changes nothing.
	if code, _, _ := devLogin(t, env, "spoofed", map[string]string{"X-Real-IP": "203.0.113.9"}); code != http.StatusTooManyRequests {
		t.Fatalf("X-Real-IP without --trust-proxy: HTTP %d, want 429", code)
	}
	// Other routes are not throttled.
	if code := env.Do(chattest.Session{}, "GET", "/healthz", nil, nil); code != 200 {
		t.Fatalf("healthz: HTTP %d", code)
	}
}

// Behind a trusted proxy each forwarded client address has its own budget,
// which refills over time.
func TestDevLoginThrottlePerForwardedAddress(t *testing.T) {
	env := chattest.Start(t, server.Config{DevLogin: true, TrustProxy: true, DevLoginRate: actors.Rate{Messages: 2, Per: 2 * time.Second}})
	a := map[string]string{"X-Real-IP": "198.51.100.1"}
	b := map[string]string{"X-Real-IP": "198.51.100.2"}
	for range 2 {
		if code, m, _ := devLogin(t, env, "a", a); code != 200 {
			t.Fatalf("a: HTTP %d %v", code, m)
		}
	}
	code, _, retry := devLogin(t, env, "a", a)
	if code != http.StatusTooManyRequests {
		t.Fatalf("a's third login: HTTP %d, want 429", code)
	}
	if code, m, _ := devLogin(t, env, "b", b); code != 200 {
		t.Fatalf("b, another address: HTTP %d %v", code, m)
	}
	s, _ := strconv.Atoi(retry)
	time.Sleep(time.Duration(s) * time.Second)
	if code, m, _ := devLogin(t, env, "a", a); code != 200 {
		t.Fatalf("a after Retry-After (%s s): HTTP %d %v", retry, code, m)
	}
}

// Nicknames lose bidi controls and zero-width spaces wherever they enter; a
// name with nothing left is refused.
func TestNickNamesCleaned(t *testing.T) {
	env := chattest.Start(t, noLimit())
	code, m, _ := devLogin(t, env, "\u202Emei\u200B", nil)
	ui, _ := m["userInfo"].(map[string]any)
	if code != 200 || ui["nickName"] != "mei" {
		t.Fatalf("dev login with U+202E: HTTP %d %v, want nickName mei", code, m)
	}
	if code, m, _ := devLogin(t, env, "\u200B\u2066\uFEFF", nil); code != 400 || m["error"] != "ERR_LOGIN_FAILED" {
		t.Fatalf("dev login with an invisible name: HTTP %d %v, want 400", code, m)
	}
	s := env.DevLogin("bo")
	var me map[string]any
	if code := env.Do(s, "POST", "/profile", map[string]any{"nickName": "b\u2067o\u2060 👩\u200D💻"}, &me); code != 200 || me["nickName"] != "bo 👩\u200D💻" {
		t.Fatalf("profile: HTTP %d %v, want nickName %q", code, me, "bo 👩\u200D💻")
	}
	if code := env.Do(s, "POST", "/profile", map[string]any{"nickName": "\u202A\u202C"}, &me); code != 400 {
		t.Fatalf("profile with an invisible name: HTTP %d %v, want 400", code, me)
	}
	c := env.Dial(s, "room=names")
	c.NextOfType("system")
	c.Send(map[string]any{"text": true, "content": "hi"})
	if m := c.NextOfType("user"); m["nickName"] != "bo 👩\u200D💻" {
		t.Fatalf("message carries nickName %q", m["nickName"])
	}
}
