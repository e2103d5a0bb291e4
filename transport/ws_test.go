package transport_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pandachat/pandachat/actors"
	"github.com/pandachat/pandachat/internal/chattest"
	"github.com/pandachat/pandachat/server"
)

func devServer(t *testing.T) *chattest.Env {
	return chattest.Start(t, server.Config{DevLogin: true, Rate: actors.Rate{Off: true}})
}

// post sends n text messages to room and waits for their echoes.
func post(t *testing.T, env *chattest.Env, s chattest.Session, room string, n int) {
	t.Helper()
	c := env.Dial(s, "room="+room)
	c.NextOfType("system")
	for i := 1; i <= n; i++ {
		c.Send(map[string]any{"text": true, "content": fmt.Sprintf("m%d", i)})
	}
	for i := 1; i <= n; i++ {
		if m := c.NextChat(); m.Type != "user" {
			t.Fatalf("echo %d: %+v", i, m)
		}
	}
	_ = c.Conn.WriteClose(1000, nil)
	c.Closed()
}

// since is the id a reconnecting client has seen: a whole number replays what
// came after it; anything else is refused, never read as "no since".
func TestSinceParameter(t *testing.T) {
	env := devServer(t)
	s := env.DevLogin("a")
	post(t, env, s, "since", 3)

	for _, tc := range []struct {
		query string
		want  []uint64 // replayed ids after the system frame
	}{
		{"", nil},
		{"since=", nil}, // empty is absent
		{"since=0", []uint64{1, 2, 3}},
		{"since=1", []uint64{2, 3}},
		{"since=3", nil},
		{"since=99", nil},
		{"since=18446744073709551615", nil},
	} {
		t.Run(tc.query, func(t *testing.T) {
			c := env.Dial(s, "room=since&"+tc.query)
			if m := c.NextChat(); m.Type != "system" {
				t.Fatalf("first frame %+v", m)
			}
			for _, id := range tc.want {
				if m := c.NextChat(); m.ID != id || m.Type != "user" {
					t.Fatalf("replay: got %+v, want id %d", m, id)
				}
			}
			c.Quiet(100 * time.Millisecond)
			_ = c.Conn.WriteClose(1000, nil)
			c.Closed()
		})
	}

	for _, bad := range []string{"x", "-1", "1.5", "+1", "0x10", "1e3", "18446744073709551616", "%201"} {
		t.Run("since="+bad, func(t *testing.T) {
			c := env.Dial(s, "room=since&since="+bad)
			m := c.Next()
			if m["type"] != "error" || m["error"] != "ERR_BAD_MESSAGE" || !strings.Contains(fmt.Sprint(m["message"]), "since") {
				t.Fatalf("frame %v, want ERR_BAD_MESSAGE about since", m)
			}
			if code := c.Closed(); code != 1008 {
				t.Errorf("close code %d, want 1008", code)
			}
		})
	}
}

// During shutdown a WebSocket upgrade gets HTTP 503 instead of a socket that
// is closed at once, and /readyz says the server is draining.
//
// Through Server.Shutdown no request reaches a handler once shutdown began:
// the listener closes, and net/http drops a request it reads while shutting
// down. The 503 is for upgrades already in flight when draining starts, so
// the test drains the edge itself, with the listener still open, and sends
// its requests from inside the drain.
func TestUpgradeWhileDraining(t *testing.T) {
	env := devServer(t)
	s := env.DevLogin("a")
	open := env.Dial(s, "room=drain")
	open.NextOfType("system")
	edge := env.Srv.Edge()

	upgrade := func() (int, string) {
		q := url.Values{"room": {"drain"}, "X-WX-Id": {s.ID}, "X-WX-Skey": {s.Skey}}
		req, _ := http.NewRequest("GET", env.URL+"/ws?"+q.Encode(), nil)
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "websocket")
		req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		req.Header.Set("Sec-WebSocket-Version", "13")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("upgrade: %v", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusSwitchingProtocols {
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		return resp.StatusCode, ""
	}
	if code, _ := upgrade(); code != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade before shutdown: HTTP %d", code)
	}

	ctx, cancel := context.WithTimeout(context.Background(), chattest.Wait)
	defer cancel()
	err := edge.Drain(ctx, func() error {
		if code, body := upgrade(); code != http.StatusServiceUnavailable || !strings.Contains(body, "shutting down") {
			t.Errorf("upgrade while draining: HTTP %d %q, want 503", code, body)
		}
		resp, err := http.Get(env.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		var ready map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&ready)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || ready["ready"] != false || ready["reason"] != "draining" {
			t.Errorf("readyz while draining: HTTP %d %v", resp.StatusCode, ready)
		}
		if edge.Open() == 0 {
			t.Error("the open socket is not counted")
		}
		_ = open.Conn.WriteClose(1000, nil) // what the hub's shutdown makes every socket do
		return nil
	})
	if err != nil {
		t.Fatalf("drain: %v", err)
	}
	if n := edge.Open(); n != 0 {
		t.Errorf("drain returned with %d sockets open", n)
	}
}
