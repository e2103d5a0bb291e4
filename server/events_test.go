package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pandachat/pandachat/actors"
	"github.com/pandachat/pandachat/internal/chattest"
	"github.com/pandachat/pandachat/server"
)

// Tests of protocol version 2 (v=2): recalls, reactions, typing, mentions,
// unread counts, against the real server.

func uidOf(s chattest.Session) string { return s.UserInfo["uid"].(string) }

func joined(t *testing.T, env *chattest.Env, s chattest.Session, query string) *chattest.Client {
	t.Helper()
	c := env.Dial(s, query)
	if m := c.Next(); m["type"] != "system" {
		t.Fatalf("first frame %v, want system", m)
	}
	return c
}

// expect reads the next frame and checks the fields given (and that those
// given as nil are absent).
func expect(t *testing.T, c *chattest.Client, want map[string]any) map[string]any {
	t.Helper()
	m := c.Next()
	for k, v := range want {
		got, has := m[k]
		if v == nil {
			if has {
				t.Fatalf("frame %v has %q, want none", m, k)
			}
			continue
		}
		if !has || fmt.Sprint(got) != fmt.Sprint(v) {
			t.Fatalf("frame %v: %s = %v, want %v", m, k, got, v)
		}
	}
	return m
}

// historyOf reads GET /history with the query and returns the items and X-Last-Id.
func historyOf(t *testing.T, env *chattest.Env, s chattest.Session, query string) ([]map[string]any, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", env.URL+"/history?"+query, nil)
	req.Header.Set("X-WX-Id", s.ID)
	req.Header.Set("X-WX-Skey", s.Skey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var items []map[string]any
	if resp.StatusCode != 200 || json.Unmarshal(b, &items) != nil {
		t.Fatalf("history: HTTP %d %s", resp.StatusCode, b)
	}
	return items, resp.Header.Get("X-Last-Id")
}

func itemIDs(items []map[string]any) []int {
	out := []int{}
	for _, m := range items {
		out = append(out, int(m["id"].(float64)))
	}
	return out
}

func text(content string) map[string]any { return map[string]any{"text": true, "content": content} }

// A recall and a reaction travel as events of the room's sequence: members of
// version 2 get them live and in replays; the original client (version 1)
// never sees them, nor the recalled message in a replay; the recalled content
// is gone from the store, and /history shows the message as recalled.
func TestRecallAndReactionAcrossReplay(t *testing.T) {
	t.Parallel()
	env := chattest.Start(t, noLimit())
	alice, bob, carol := env.DevLogin("alice"), env.DevLogin("bob"), env.DevLogin("carol")
	a := joined(t, env, alice, "room=r&v=2")
	b := joined(t, env, bob, "room=r&v=2")
	c := joined(t, env, carol, "room=r") // the original client

	a.Send(map[string]any{"text": true, "content": "secret plan", "cid": "m1"})
	expect(t, a, map[string]any{"type": "user", "id": 1, "cid": "m1", "content": "secret plan"})
	expect(t, b, map[string]any{"type": "remote", "id": 1, "content": "secret plan"})
	expect(t, c, map[string]any{"type": "remote", "id": 1})
	b.Send(text("ok"))
	for _, cl := range []*chattest.Client{a, b, c} {
		expect(t, cl, map[string]any{"id": 2, "content": "ok"})
	}
	b.Send(map[string]any{"react": 1, "emoji": "👍", "cid": "r1"})
	expect(t, b, map[string]any{"type": "reaction", "id": 3, "target": 1, "emoji": "👍", "on": true, "uid": uidOf(bob), "cid": "r1"})
	expect(t, a, map[string]any{"type": "reaction", "id": 3, "target": 1, "emoji": "👍", "on": true, "uid": uidOf(bob), "cid": nil})
	a.Send(map[string]any{"recall": 1})
	for _, cl := range []*chattest.Client{a, b} {
		expect(t, cl, map[string]any{"type": "recall", "id": 4, "target": 1, "uid": uidOf(alice), "nickName": "alice"})
	}
	a.Send(text("after"))
	expect(t, a, map[string]any{"type": "user", "id": 5})
	expect(t, b, map[string]any{"type": "remote", "id": 5})
	expect(t, c, map[string]any{"type": "remote", "id": 5, "content": "after"}) // nothing of 3 and 4
	c.Quiet(200 * time.Millisecond)

	// Replays with since across both events.
	b2 := joined(t, env, bob, "room=r&v=2&since=0")
	m := expect(t, b2, map[string]any{"type": "remote", "id": 1, "recalled": true, "uid": uidOf(alice), "content": nil, "text": nil})
	if strings.Contains(fmt.Sprint(m), "secret") {
		t.Fatalf("replay of a recalled message shows its content: %v", m)
	}
	expect(t, b2, map[string]any{"type": "user", "id": 2})
	expect(t, b2, map[string]any{"type": "reaction", "id": 3, "target": 1})
	expect(t, b2, map[string]any{"type": "recall", "id": 4, "target": 1})
	expect(t, b2, map[string]any{"id": 5, "content": "after"})
	b3 := joined(t, env, bob, "room=r&v=2&since=3")
	expect(t, b3, map[string]any{"type": "recall", "id": 4})
	expect(t, b3, map[string]any{"id": 5})
	c2 := joined(t, env, carol, "room=r&since=0")
	expect(t, c2, map[string]any{"id": 2, "content": "ok"})
	expect(t, c2, map[string]any{"id": 5, "content": "after"})
	c2.Quiet(200 * time.Millisecond)

	// /history: version 2 shows the recalled message as such, version 1 passes over it.
	items, last := historyOf(t, env, carol, "room=r&v=2")
	if got := itemIDs(items); !reflect.DeepEqual(got, []int{1, 2, 5}) || last != "5" {
		t.Fatalf("history v=2 = %v (X-Last-Id %s), want [1 2 5] and 5", got, last)
	}
	if items[0]["recalled"] != true || items[0]["content"] != nil || items[0]["reactions"] != nil {
		t.Errorf("recalled message in history: %v", items[0])
	}
	if items, _ := historyOf(t, env, carol, "room=r"); !reflect.DeepEqual(itemIDs(items), []int{2, 5}) {
		t.Errorf("history v=1 = %v, want [2 5]", itemIDs(items))
	}
	// The content is erased from the store, not only from the views.
	stored, err := env.Srv.Store().MessagesAfter("r", 0, 100)
	if err != nil || len(stored) != 5 {
		t.Fatalf("store holds %d, %v", len(stored), err)
	}
	for _, sm := range stored {
		if strings.Contains(string(sm.Data), "secret") {
			t.Errorf("the store still holds the recalled content: %s", sm.Data)
		}
	}
	// The recalled message's cid still finds it: a re-send stores nothing.
	a.Send(map[string]any{"text": true, "content": "secret plan", "cid": "m1"})
	expect(t, a, map[string]any{"id": 1, "recalled": true, "cid": "m1"})
	a.Send(text("last"))
	expect(t, a, map[string]any{"id": 6})
}

// Reactions toggle per user and emoji, and /history carries them aggregated.
func TestReactionsAggregate(t *testing.T) {
	t.Parallel()
	cfg := noLimit()
	cfg.DataDir = t.TempDir()
	env := chattest.Start(t, cfg)
	users := []chattest.Session{env.DevLogin("u0"), env.DevLogin("u1"), env.DevLogin("u2")}
	var cs []*chattest.Client
	for _, u := range users {
		cs = append(cs, joined(t, env, u, "room=rx&v=2"))
	}
	cs[0].Send(text("vote"))
	for _, c := range cs {
		expect(t, c, map[string]any{"id": 1})
	}
	id := 2
	react := func(i int, emoji string, on bool) {
		t.Helper()
		cs[i].Send(map[string]any{"react": 1, "emoji": emoji})
		for _, c := range cs {
			expect(t, c, map[string]any{"type": "reaction", "id": id, "emoji": emoji, "on": on, "uid": uidOf(users[i])})
		}
		id++
	}
	react(0, "👍", true)
	react(1, "👍", true)
	react(2, "👍", true)
	react(1, "❤️", true)
	react(2, "👍", false) // toggled off
	react(2, "👍", true)  // and on again
	react(0, "👍", false)
	items, last := historyOf(t, env, users[1], "room=rx&v=2")
	if len(items) != 1 || last != fmt.Sprint(id-1) {
		t.Fatalf("history = %v (last %s)", items, last)
	}
	if got := items[0]["reactions"]; !reflect.DeepEqual(got, map[string]any{"👍": 2.0, "❤️": 1.0}) {
		t.Errorf("reactions = %v, want 👍 2, ❤️ 1", got)
	}
	if got := items[0]["myReactions"]; !reflect.DeepEqual(got, []any{"👍", "❤️"}) {
		t.Errorf("myReactions of u1 = %v", got)
	}
	items, _ = historyOf(t, env, users[0], "room=rx&v=2")
	if items[0]["myReactions"] != nil {
		t.Errorf("u0 took its reaction back, yet myReactions = %v", items[0]["myReactions"])
	}
	if items, _ := historyOf(t, env, users[0], "room=rx"); len(items) != 1 || items[0]["reactions"] != nil {
		t.Errorf("history v=1 = %v, want the message without reactions", items)
	}
	// Refusals: no such message, an event, not one emoji.
	for _, bad := range []map[string]any{
		{"react": 99, "emoji": "👍", "cid": "x"}, {"react": 2, "emoji": "👍", "cid": "x"},
	} {
		cs[0].Send(bad)
		expect(t, cs[0], map[string]any{"type": "error", "error": "ERR_NOT_ALLOWED", "cid": "x"})
	}
	cs[0].Send(map[string]any{"react": 1, "emoji": "ok"})
	expect(t, cs[0], map[string]any{"type": "error", "error": "ERR_BAD_MESSAGE"})
	// After a restart the room reads the reactions back from the store.
	if err := env.Stop(); err != nil {
		t.Fatal(err)
	}
	env = chattest.Start(t, cfg)
	c := joined(t, env, users[0], "room=rx&v=2")
	c.Send(map[string]any{"react": 1, "emoji": "❤️"})
	expect(t, c, map[string]any{"type": "reaction", "id": id, "on": true})
	c.Send(map[string]any{"react": 1, "emoji": "🐼"})
	expect(t, c, map[string]any{"type": "reaction", "id": id + 1, "on": true})
	c.Send(map[string]any{"react": 1, "emoji": "🐼"})
	expect(t, c, map[string]any{"type": "reaction", "id": id + 2, "on": false})
	items, _ = historyOf(t, env, users[1], "room=rx&v=2")
	if got := items[0]["reactions"]; !reflect.DeepEqual(got, map[string]any{"👍": 2.0, "❤️": 2.0}) {
		t.Errorf("reactions = %v, want 👍 2, ❤️ 2", got)
	}
}

// A recall is refused after the window, for another user's message, for what
// is no message, twice, and on a connection of version 1.
func TestRecallRefused(t *testing.T) {
	t.Parallel()
	cfg := noLimit()
	cfg.RecallWindow = 300 * time.Millisecond
	env := chattest.Start(t, cfg)
	alice, bob := env.DevLogin("alice"), env.DevLogin("bob")
	a := joined(t, env, alice, "room=w&v=2")
	b := joined(t, env, bob, "room=w&v=2")
	a1 := joined(t, env, alice, "room=w") // alice's original client
	a.Send(text("one"))
	expect(t, a, map[string]any{"id": 1})
	expect(t, b, map[string]any{"id": 1})
	expect(t, a1, map[string]any{"id": 1})

	b.Send(map[string]any{"recall": 1, "cid": "x"})
	expect(t, b, map[string]any{"type": "error", "error": "ERR_NOT_ALLOWED", "cid": "x"})
	a1.Send(map[string]any{"recall": 1})
	expect(t, a1, map[string]any{"type": "error", "error": "ERR_BAD_MESSAGE"}) // version 1 has no recall
	for _, target := range []int{7, 0} {
		a.Send(map[string]any{"recall": target})
		expect(t, a, map[string]any{"type": "error"})
	}
	time.Sleep(cfg.RecallWindow + 100*time.Millisecond)
	a.Send(map[string]any{"recall": 1})
	if m := expect(t, a, map[string]any{"type": "error", "error": "ERR_NOT_ALLOWED"}); !strings.Contains(m["message"].(string), "300ms") {
		t.Errorf("refusal %v does not name the window", m)
	}
	a.Send(text("two"))
	expect(t, a, map[string]any{"id": 2})
	a.Send(map[string]any{"recall": 2})
	expect(t, a, map[string]any{"type": "recall", "id": 3, "target": 2})
	a.Send(map[string]any{"recall": 2})
	expect(t, a, map[string]any{"type": "error", "error": "ERR_NOT_ALLOWED"})
	a.Send(map[string]any{"react": 2, "emoji": "👍"})
	expect(t, a, map[string]any{"type": "error", "error": "ERR_NOT_ALLOWED"})
	expect(t, b, map[string]any{"id": 2})
	expect(t, b, map[string]any{"type": "recall", "id": 3})
	b.Quiet(200 * time.Millisecond) // nothing of the refused ones
}

// Typing notices reach the other members of version 2 at most once per 3 s per
// user, are never stored and take no id.
func TestTypingThrottledNotStored(t *testing.T) {
	t.Parallel()
	env := chattest.Start(t, noLimit())
	alice, bob, carol := env.DevLogin("alice"), env.DevLogin("bob"), env.DevLogin("carol")
	a := joined(t, env, alice, "room=t&v=2")
	a2 := joined(t, env, alice, "room=t&v=2") // alice's second device
	b := joined(t, env, bob, "room=t&v=2")
	c := joined(t, env, carol, "room=t")
	for i := 0; i < 3; i++ {
		a.Send(map[string]any{"typing": true})
	}
	a2.Send(map[string]any{"typing": true}) // the same user: within the 3 s
	expect(t, b, map[string]any{"type": "typing", "uid": uidOf(alice), "nickName": "alice", "id": nil})
	b.Send(map[string]any{"typing": true})
	expect(t, a, map[string]any{"type": "typing", "uid": uidOf(bob)})
	expect(t, a2, map[string]any{"type": "typing", "uid": uidOf(bob)})
	b.Quiet(300 * time.Millisecond)
	c.Quiet(0)
	a.Send(text("hi"))
	for _, cl := range []*chattest.Client{a, b, c} {
		expect(t, cl, map[string]any{"id": 1, "content": "hi"}) // typing took no id
	}
	if items, last := historyOf(t, env, bob, "room=t&v=2"); len(items) != 1 || last != "1" {
		t.Errorf("history = %v (last %s), want only the message", items, last)
	}
	c.Send(map[string]any{"typing": true}) // version 1: not a frame it knows
	expect(t, c, map[string]any{"type": "error", "error": "ERR_BAD_MESSAGE"})
}

// Mentions name members' uids (at most 20): stored and broadcast with the
// message to version 2, left out for version 1.
func TestMentions(t *testing.T) {
	t.Parallel()
	env := chattest.Start(t, noLimit())
	alice, bob, dave := env.DevLogin("alice"), env.DevLogin("bob"), env.DevLogin("dave")
	a := joined(t, env, alice, "room=m&v=2")
	b := joined(t, env, bob, "room=m")
	d := joined(t, env, dave, "room=elsewhere")
	waitReadPosition(t, env, alice, "m", 0)
	waitReadPosition(t, env, bob, "m", 0)
	waitReadPosition(t, env, dave, "elsewhere", 0)
	a.Send(map[string]any{"text": true, "content": "@bob look", "mentions": []string{uidOf(bob), uidOf(bob), uidOf(alice)}})
	expect(t, a, map[string]any{"id": 1, "mentions": []any{uidOf(bob), uidOf(alice)}})
	expect(t, b, map[string]any{"id": 1, "content": "@bob look", "mentions": nil})
	b2 := joined(t, env, bob, "room=m&v=2&since=0")
	expect(t, b2, map[string]any{"id": 1, "mentions": []any{uidOf(bob), uidOf(alice)}})
	b3 := joined(t, env, bob, "room=m&since=0")
	expect(t, b3, map[string]any{"id": 1, "mentions": nil})

	many := make([]string, 21)
	for i := range many {
		many[i] = fmt.Sprintf("u%d", i)
	}
	for _, mentions := range []any{[]string{uidOf(dave)}, []string{"no-such-user"}, many} {
		a.Send(map[string]any{"text": true, "content": "hey", "mentions": mentions, "cid": "c"})
		expect(t, a, map[string]any{"type": "error", "error": "ERR_BAD_MESSAGE", "cid": "c"})
	}
	for _, mentions := range []any{[]int{1}, "x"} { // of the wrong type: the cid is not read
		a.Send(map[string]any{"text": true, "content": "hey", "mentions": mentions, "cid": "c"})
		expect(t, a, map[string]any{"type": "error", "error": "ERR_BAD_MESSAGE"})
	}
	if items, _ := historyOf(t, env, bob, "room=m&v=2"); len(items) != 1 || items[0]["mentions"] == nil {
		t.Errorf("history v=2 = %v, want the message with its mentions", items)
	}
	if items, _ := historyOf(t, env, bob, "room=m"); len(items) != 1 || items[0]["mentions"] != nil {
		t.Errorf("history v=1 = %v, want the message without mentions", items)
	}
	d.Quiet(0)
}

// waitReadPosition waits until the store holds s's read position in room (the
// room writes it behind the join or leave that moves it).
func waitReadPosition(t *testing.T, env *chattest.Env, s chattest.Session, room string, want uint64) {
	t.Helper()
	deadline := time.Now().Add(chattest.Wait)
	for {
		got, err := env.Srv.Store().ReadPosition(uidOf(s), room)
		if err == nil && got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("read position of %s in %s = %d, %v; want %d", uidOf(s), room, got, err, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type roomsAnswer []struct {
	Room     string `json:"room"`
	LastID   uint64 `json:"lastId"`
	ReadID   uint64 `json:"readId"`
	Unread   int    `json:"unread"`
	Mentions int    `json:"mentions"`
}

func roomsOf(t *testing.T, env *chattest.Env, s chattest.Session) roomsAnswer {
	t.Helper()
	var out roomsAnswer
	if code := env.Do(s, "GET", "/rooms", nil, &out); code != 200 {
		t.Fatalf("GET /rooms: HTTP %d", code)
	}
	return out
}

// waitRooms polls GET /rooms until ok holds (read positions are written
// behind the join or leave that moves them).
func waitRooms(t *testing.T, env *chattest.Env, s chattest.Session, ok func(roomsAnswer) bool) roomsAnswer {
	t.Helper()
	deadline := time.Now().Add(chattest.Wait)
	for {
		got := roomsOf(t, env, s)
		if ok(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /rooms = %+v", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// GET /rooms lists the rooms a user joined with their last id and the user's
// read position; POST /read moves it forward only.
func TestRoomsAndRead(t *testing.T) {
	t.Parallel()
	env := chattest.Start(t, noLimit())
	alice, bob := env.DevLogin("alice"), env.DevLogin("bob")
	if got := roomsOf(t, env, bob); len(got) != 0 {
		t.Fatalf("a new user's rooms: %+v", got)
	}
	a := joined(t, env, alice, "room=one&v=2")
	watch := joined(t, env, alice, "room=one&presence=1") // sees bob leave
	for i := 1; i <= 3; i++ {                             // history from before bob joined is not unread for him
		a.Send(text(fmt.Sprint("early ", i)))
		expect(t, a, map[string]any{"id": i})
	}
	b := joined(t, env, bob, "room=one") // a client of version 1 has rooms too
	two := joined(t, env, bob, "room=two")
	waitRooms(t, env, bob, func(r roomsAnswer) bool {
		return len(r) == 2 && r[0].Room == "one" && r[0].LastID == 3 && r[0].ReadID == 3 && r[1].Room == "two" && r[1].LastID == 0
	})
	a.Send(text("seen live"))
	expect(t, a, map[string]any{"id": 4})
	expect(t, b, map[string]any{"id": 4})
	// While bob is in the room, everything is read.
	if got := roomsOf(t, env, bob); got[0].ReadID != 4 || got[0].Unread != 0 {
		t.Errorf("rooms while online = %+v", got)
	}
	_ = b.Conn.WriteClose(1000, nil)
	b.Closed()
	for m := watch.NextOfType("presence"); m["event"] != "leave"; m = watch.NextOfType("presence") {
	}
	waitReadPosition(t, env, bob, "one", 4) // what was delivered before he left
	a.Send(text("one"))
	a.Send(map[string]any{"text": true, "content": "two @bob", "mentions": []string{uidOf(bob)}})
	expect(t, a, map[string]any{"id": 5})
	expect(t, a, map[string]any{"id": 6})
	a.Send(map[string]any{"react": 5, "emoji": "👍"}) // an event: not unread
	expect(t, a, map[string]any{"id": 7, "type": "reaction"})
	waitRooms(t, env, bob, func(r roomsAnswer) bool { // bob's socket is gone from the users' count a moment after the room
		return r[0].LastID == 7 && r[0].ReadID == 4 && r[0].Unread == 2 && r[0].Mentions == 1
	})
	read := func(body any) (int, map[string]any) {
		t.Helper()
		var ans map[string]any
		code := env.Do(bob, "POST", "/read", body, &ans)
		return code, ans
	}
	if code, ans := read(map[string]any{"room": "one", "id": 5}); code != 200 || ans["readId"] != 5.0 {
		t.Errorf("POST /read 5 = %d %v", code, ans)
	}
	if code, ans := read(map[string]any{"room": "one", "id": 2}); code != 200 || ans["readId"] != 5.0 {
		t.Errorf("POST /read back to 2 = %d %v, want it kept at 5", code, ans)
	}
	if got := roomsOf(t, env, bob); got[0].ReadID != 5 || got[0].Unread != 1 {
		t.Errorf("rooms after POST /read = %+v", got[0])
	}
	if code, ans := read(map[string]any{"room": "one", "id": 1000}); code != 200 || ans["readId"] != 7.0 {
		t.Errorf("POST /read past the end = %d %v, want the last id", code, ans)
	}
	for _, bad := range []any{map[string]any{"room": "one"}, map[string]any{"id": 1}, map[string]any{"room": "a b", "id": 1}, map[string]any{"room": "one", "id": -1}, "x"} {
		if code, _ := read(bad); code != 400 {
			t.Errorf("POST /read %v = %d, want 400", bad, code)
		}
	}
	if code := env.Do(chattest.Session{ID: "x", Skey: "y"}, "GET", "/rooms", nil, nil); code != 401 {
		t.Errorf("GET /rooms without a session = %d", code)
	}
	if code := env.Do(bob, "GET", "/read", nil, nil); code != 405 {
		t.Errorf("GET /read = %d, want 405", code)
	}
	// A replay delivers everything: the read position follows.
	if _, err := env.Srv.Store().ReadPosition(uidOf(bob), "two"); err != nil {
		t.Errorf("room two: %v", err)
	}
	bb := joined(t, env, bob, "room=one&since=2")
	expect(t, bb, map[string]any{"id": 3})
	_ = bb.Conn.WriteClose(1000, nil)
	bb.Closed()
	waitReadPosition(t, env, bob, "one", 7)
	two.Quiet(0)
}

// Reactions and recalls count against the sender's message rate like any frame.
func TestReactionsRateLimited(t *testing.T) {
	t.Parallel()
	cfg := server.Config{DevLogin: true, Rate: actors.Rate{Messages: 3, Per: time.Minute}}
	env := chattest.Start(t, cfg)
	a := joined(t, env, env.DevLogin("alice"), "room=rl&v=2")
	a.Send(text("x"))
	expect(t, a, map[string]any{"id": 1})
	a.Send(map[string]any{"react": 1, "emoji": "👍"})
	expect(t, a, map[string]any{"id": 2})
	a.Send(map[string]any{"react": 1, "emoji": "🐼"})
	expect(t, a, map[string]any{"id": 3})
	a.Send(map[string]any{"react": 1, "emoji": "❤️", "cid": "r"})
	expect(t, a, map[string]any{"type": "error", "error": "ERR_RATE_LIMITED", "cid": "r"})
}
