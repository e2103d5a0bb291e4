package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lxzan/gws"

	"github.com/pandachat/pandachat/actors"
	"github.com/pandachat/pandachat/internal/chattest"
	"github.com/pandachat/pandachat/server"
)

// uploadPNG uploads a small real PNG and returns its media URL.
func uploadPNG(t *testing.T, env *chattest.Env, s chattest.Session) string {
	t.Helper()
	code, ans := env.Upload(s, "pic.png", chattest.PNG(3, 2))
	u, _ := ans["url"].(string)
	if code != 200 || !strings.HasPrefix(u, env.URL+"/media/") {
		t.Fatalf("upload: HTTP %d url %q", code, u)
	}
	return u
}

func noLimit() server.Config {
	return server.Config{DevLogin: true, Rate: actors.Rate{Off: true}, ConnectRate: actors.Rate{Off: true}}
}

// Three users send 200 messages each at once: every connection sees ids
// 1..600 in the same order; after a restart ids go on at 601 and sessions hold.
func TestOrderingAndRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := noLimit()
	cfg.DataDir = dir
	env := chattest.Start(t, cfg)
	const users, each = 3, 200
	var sessions []chattest.Session
	var clients []*chattest.Client
	for i := 0; i < users; i++ {
		s := env.DevLogin(fmt.Sprintf("user%d", i))
		sessions = append(sessions, s)
		c := env.Dial(s, "")
		c.NextOfType("system")
		clients = append(clients, c)
	}
	// Everyone must be in the room before the first message.
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < each; j++ {
				b, _ := json.Marshal(map[string]any{"text": true, "content": fmt.Sprintf("u%d-%d", i, j)})
				if err := c.Conn.WriteMessage(gws.OpcodeText, b); err != nil {
					t.Errorf("send: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	var orders [][]string
	for ci, c := range clients {
		var order []string
		for id := uint64(1); id <= users*each; id++ {
			m := c.NextChat()
			if m.Type == "system" {
				id--
				continue
			}
			if m.ID != id {
				t.Fatalf("client %d: got id %d, want %d", ci, m.ID, id)
			}
			order = append(order, m.Content)
		}
		orders = append(orders, order)
	}
	for ci := 1; ci < len(orders); ci++ {
		for k := range orders[0] {
			if orders[ci][k] != orders[0][k] {
				t.Fatalf("client %d differs at id %d: %q vs %q", ci, k+1, orders[ci][k], orders[0][k])
			}
		}
	}
	if err := env.Stop(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	for _, c := range clients {
		if code := c.Closed(); code != 1001 {
			t.Errorf("shutdown close code %d, want 1001", code)
		}
	}

	env2 := chattest.Start(t, cfg)
	c := env2.Dial(sessions[0], "") // the old session is still valid
	if m := c.NextChat(); m.Type != "system" {
		t.Fatalf("after restart: %+v", m)
	}
	c.Send(map[string]any{"text": true, "content": "after restart"})
	if m := c.NextChat(); m.ID != users*each+1 || m.Type != "user" {
		t.Fatalf("after restart got %+v, want id %d", m, users*each+1)
	}
}

func TestOnlineCount(t *testing.T) {
	env := chattest.Start(t, noLimit())
	a, b := env.DevLogin("a"), env.DevLogin("b")
	ca := env.Dial(a, "room=count")
	if m := ca.NextChat(); m.Num != 1 {
		t.Fatalf("first: %+v", m)
	}
	cb := env.Dial(b, "room=count")
	if m := cb.NextChat(); m.Num != 2 {
		t.Fatalf("second: %+v", m)
	}
	other := env.Dial(b, "room=elsewhere") // other rooms do not count
	if m := other.NextChat(); m.Num != 1 {
		t.Fatalf("other room: %+v", m)
	}
	ca.Send(map[string]any{"text": true, "content": "x"})
	if m := ca.NextChat(); m.Number != 2 {
		t.Errorf("number = %d, want 2", m.Number)
	}
	cb.NextChat()
	_ = cb.Conn.WriteClose(1000, nil)
	cb.Closed()
	// The count drops once the room has seen the close.
	deadline := time.Now().Add(chattest.Wait)
	for {
		ca.Send(map[string]any{"text": true, "content": "y"})
		m := ca.NextChat()
		if m.Number == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("number stayed %d after a disconnect", m.Number)
		}
		time.Sleep(20 * time.Millisecond)
	}
	c3 := env.Dial(b, "room=count")
	if m := c3.NextChat(); m.Num != 2 {
		t.Errorf("rejoin: %+v", m)
	}
}

func TestBadInput(t *testing.T) {
	env := chattest.Start(t, noLimit())
	a, b := env.DevLogin("a"), env.DevLogin("b")
	ca, cb := env.Dial(a, ""), env.Dial(b, "")
	ca.NextOfType("system")
	cb.NextOfType("system")
	rows := []struct {
		name  string
		op    gws.Opcode
		frame string
		cid   string
	}{
		{"invalid JSON", gws.OpcodeText, `{"text":true,`, ""},
		{"not an object", gws.OpcodeText, `[1,2]`, ""},
		{"a string", gws.OpcodeText, `"hello"`, ""},
		{"neither kind", gws.OpcodeText, `{"content":"hi"}`, ""},
		{"both kinds", gws.OpcodeText, `{"text":true,"gallery":true,"content":"x","url":"/media/x","cid":"c1"}`, "c1"},
		{"empty content", gws.OpcodeText, `{"text":true,"content":"   ","cid":"c2"}`, "c2"},
		{"too long", gws.OpcodeText, `{"text":true,"content":"` + strings.Repeat("长", 2001) + `"}`, ""},
		{"wrong type", gws.OpcodeText, `{"text":"yes","content":"x"}`, ""},
		{"foreign url", gws.OpcodeText, `{"gallery":true,"url":"https://evil.example/x.png","cid":"c3"}`, "c3"},
		{"unknown media", gws.OpcodeText, `{"gallery":true,"url":"/media/` + strings.Repeat("a", 64) + `"}`, ""},
		{"binary", gws.OpcodeBinary, `{"text":true,"content":"x"}`, ""},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			ca.SendRaw(r.op, []byte(r.frame))
			m := ca.NextChat()
			if m.Type != "error" || m.Error != "ERR_BAD_MESSAGE" || m.CID != r.cid {
				t.Errorf("got %+v, want ERR_BAD_MESSAGE with cid %q", m, r.cid)
			}
		})
	}
	// Fields a client may not set are ignored; the connection still works.
	ca.SendRaw(gws.OpcodeText, []byte(`{"text":true,"content":"legit","type":"system","id":999,"uid":"fake","nickName":"Admin","avatarUrl":"x","time":1,"number":42,"cid":"ok"}`))
	m := ca.NextChat()
	if m.Type != "user" || m.ID != 1 || m.UID == "fake" || m.NickName != "a" || m.Time == 1 || m.Number != 2 || m.CID != "ok" {
		t.Errorf("forged fields leaked: %+v", m)
	}
	if got := cb.NextChat(); got.ID != 1 || got.CID != "" || got.Type != "remote" {
		t.Errorf("other user: %+v (cid must go to the sender only)", got)
	}
	cb.Quiet(200 * time.Millisecond) // none of the bad frames reached anyone else
	if ca.IsClosed() {
		t.Fatal("bad input closed the connection")
	}
}

func TestRefusedSockets(t *testing.T) {
	env := chattest.Start(t, noLimit())
	s := env.DevLogin("a")
	rows := []struct {
		name  string
		sess  chattest.Session
		query string
		field string
		code  string
	}{
		{"no session", chattest.Session{}, "", chattest.Magic, "ERR_INVALID_SESSION"},
		{"wrong skey", chattest.Session{ID: s.ID, Skey: "nope"}, "", chattest.Magic, "ERR_INVALID_SESSION"},
		{"bad room", s, "room=no/slash", "type", "ERR_BAD_ROOM"},
		{"long room", s, "room=" + strings.Repeat("r", 65), "type", "ERR_BAD_ROOM"},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			c := env.Dial(r.sess, r.query)
			m := c.Next()
			if m["error"] != r.code {
				t.Errorf("frame %v, want error %s", m, r.code)
			}
			if _, ok := m[r.field]; !ok {
				t.Errorf("frame %v lacks %s", m, r.field)
			}
			if code := c.Closed(); code != 1008 {
				t.Errorf("close code %d, want 1008", code)
			}
		})
	}
	t.Run("frame too large", func(t *testing.T) {
		c := env.Dial(s, "")
		c.NextOfType("system")
		big := `{"text":true,"content":"` + strings.Repeat("x", 65<<10) + `"}`
		_ = c.Conn.WriteMessage(gws.OpcodeText, []byte(big))
		if code := c.Closed(); code != 1009 {
			t.Errorf("close code %d, want 1009", code)
		}
	})
}

// A profile change shows in /me and in the next message; stored messages keep
// the profile they were sent with.
func TestProfileChange(t *testing.T) {
	env := chattest.Start(t, noLimit())
	a, b := env.DevLogin("before"), env.DevLogin("reader")
	ca, cb := env.Dial(a, "room=prof"), env.Dial(b, "room=prof")
	ca.NextOfType("system")
	cb.NextOfType("system")
	ca.Send(map[string]any{"text": true, "content": "old name"})
	ca.NextChat()
	cb.NextChat()

	avatar := uploadPNG(t, env, a)
	var me map[string]any
	if st := env.Do(a, "POST", "/profile", map[string]any{"nickName": "  after ", "avatarUrl": avatar}, &me); st != 200 || me["nickName"] != "after" || me["avatarUrl"] != avatar {
		t.Fatalf("profile: %d %v", st, me)
	}
	env.Do(a, "GET", "/me", nil, &me)
	if me["nickName"] != "after" || me["avatarUrl"] != avatar || me["uid"] != a.UserInfo["uid"] {
		t.Errorf("/me = %v", me)
	}
	ca.Send(map[string]any{"text": true, "content": "new name"})
	if m := cb.NextChat(); m.NickName != "after" || m.AvatarURL != avatar {
		t.Errorf("next message carries %q %q", m.NickName, m.AvatarURL)
	}
	var hist []chattest.Chat
	env.Do(b, "GET", "/history?room=prof", nil, &hist)
	if len(hist) != 2 || hist[0].NickName != "before" || hist[1].NickName != "after" {
		t.Errorf("history: %+v", hist)
	}
	for _, bad := range []map[string]any{
		{"nickName": ""},
		{"nickName": strings.Repeat("x", 33)},
		{"avatarUrl": "https://evil.example/a.png"},
		{"avatarUrl": "/media/" + strings.Repeat("0", 64)},
		{},
	} {
		var e map[string]any
		if st := env.Do(a, "POST", "/profile", bad, &e); st != 400 {
			t.Errorf("profile %v: HTTP %d %v, want 400", bad, st, e)
		}
	}
	var e map[string]any
	if st := env.Do(chattest.Session{ID: "x", Skey: "y"}, "GET", "/me", nil, &e); st != 401 {
		t.Errorf("/me without a session: %d", st)
	}
}

// A client's Host header never reaches other users: media of this server is
// stored as a path and made absolute with each reader's own base.
func TestHostHeaderStaysWithItsClient(t *testing.T) {
	env := chattest.Start(t, noLimit())
	a, b := env.DevLogin("mallory"), env.DevLogin("reader")
	pic := uploadPNG(t, env, a)
	path := pic[len(env.URL):]

	body := strings.NewReader(`{"avatarUrl":"` + path + `"}`)
	req, _ := http.NewRequest("POST", env.URL+"/profile", body)
	req.Host = "evil.example"
	req.Header.Set("X-WX-Id", a.ID)
	req.Header.Set("X-WX-Skey", a.Skey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var me map[string]any
	json.NewDecoder(resp.Body).Decode(&me)
	resp.Body.Close()
	if resp.StatusCode != 200 || me["avatarUrl"] != "http://evil.example"+path {
		t.Fatalf("profile through another host: %d %v", resp.StatusCode, me) // its own view uses its own host
	}

	ca, cb := env.Dial(a, "room=host"), env.Dial(b, "room=host")
	ca.NextOfType("system")
	cb.NextOfType("system")
	ca.Send(map[string]any{"gallery": true, "url": path})
	if m := cb.NextChat(); m.AvatarURL != env.URL+path || m.URL != env.URL+path {
		t.Errorf("reader got avatar %q url %q, want both on %s", m.AvatarURL, m.URL, env.URL)
	}
	var hist []chattest.Chat
	env.Do(b, "GET", "/history?room=host", nil, &hist)
	if len(hist) != 1 || hist[0].AvatarURL != env.URL+path || hist[0].URL != env.URL+path {
		t.Errorf("history: %+v", hist)
	}
}
