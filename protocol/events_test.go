package protocol_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/pandachat/pandachat/protocol"
)

func TestParseClientMessageV2(t *testing.T) {
	for _, tt := range []struct {
		name, frame string
		want        protocol.ClientMessage // Kind 0: refused
		says        string                 // for refusals: part of the reason
	}{
		{name: "recall", frame: `{"recall":12,"cid":"r"}`, want: protocol.ClientMessage{Kind: protocol.KindRecall, Ext: &protocol.Ext{Target: 12}, CID: "r", HasCID: true}},
		{name: "react", frame: `{"react":3,"emoji":"👍"}`, want: protocol.ClientMessage{Kind: protocol.KindReact, Ext: &protocol.Ext{Target: 3, Emoji: "👍"}}},
		{name: "react with an escaped emoji", frame: `{"react":3,"emoji":"\ud83d\udc3c"}`, want: protocol.ClientMessage{Kind: protocol.KindReact, Ext: &protocol.Ext{Target: 3, Emoji: "🐼"}}},
		{name: "typing", frame: `{"typing":true}`, want: protocol.ClientMessage{Kind: protocol.KindTyping}},
		{name: "mentions", frame: `{"text":true,"content":"hi","mentions":["a1","b-2","a1"],"cid":"c"}`,
			want: protocol.ClientMessage{Kind: protocol.KindText, Content: "hi", Ext: &protocol.Ext{Mentions: "a1,b-2"}, CID: "c", HasCID: true}},
		{name: "no mentions", frame: `{"text":true,"content":"hi","mentions":[]}`, want: protocol.ClientMessage{Kind: protocol.KindText, Content: "hi"}},
		{name: "mentions on an image are ignored", frame: `{"gallery":true,"url":"/media/a","mentions":["a"]}`,
			want: protocol.ClientMessage{Kind: protocol.KindGallery, URL: "/media/a"}},
		{name: "twenty mentions", frame: `{"text":true,"content":"hi","mentions":[` + strings.TrimSuffix(strings.Repeat(`"u",`, 20), ",") + `]}`,
			want: protocol.ClientMessage{Kind: protocol.KindText, Content: "hi", Ext: &protocol.Ext{Mentions: "u"}}},

		{name: "recall 0", frame: `{"recall":0}`, says: "id of a message"},
		{name: "recall a string", frame: `{"recall":"3"}`, says: "recall must be a message id, not a string"},
		{name: "recall a fraction", frame: `{"recall":1.5}`, says: "recall must be a message id"},
		{name: "recall a negative", frame: `{"recall":-3}`, says: "recall must be a message id"},
		{name: "react without emoji", frame: `{"react":3}`, says: "one emoji"},
		{name: "react with text", frame: `{"react":3,"emoji":"ok"}`, says: "one emoji"},
		{name: "react with two emoji", frame: `{"react":3,"emoji":"👍👍"}`, says: "one emoji"},
		{name: "two kinds", frame: `{"recall":3,"typing":true}`, says: "not several"},
		{name: "typing false", frame: `{"typing":false}`, says: "a frame needs"},
		{name: "twenty-one mentions", frame: `{"text":true,"content":"hi","mentions":[` + strings.TrimSuffix(strings.Repeat(`"u",`, 21), ",") + `]}`, says: "at most 20"},
		{name: "a mention that is no uid", frame: `{"text":true,"content":"hi","mentions":["a b"]}`, says: "must be a uid"},
		{name: "a null mention", frame: `{"text":true,"content":"hi","mentions":[null]}`, says: "must be a uid"},
		{name: "mentions not an array", frame: `{"text":true,"content":"hi","mentions":"a"}`, says: "mentions must be an array of uids"},
		{name: "a mention of another type", frame: `{"text":true,"content":"hi","mentions":[1]}`, says: "mentions must be an array of uids"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, bad := protocol.ParseClientMessageV2([]byte(tt.frame), 100)
			if tt.want.Kind != 0 {
				if bad != nil || !reflect.DeepEqual(got, tt.want) {
					t.Fatalf("got %+v %+v, %v; want %+v %+v", got, got.Ext, bad, tt.want, tt.want.Ext)
				}
				return
			}
			if bad == nil || !strings.Contains(bad.Reason, tt.says) {
				t.Fatalf("got %+v, %v; want a refusal saying %q", got, bad, tt.says)
			}
			// Version 1 knows none of these fields.
			if v1, bad1 := protocol.ParseClientMessage([]byte(tt.frame), 100); bad1 == nil && v1.Ext != nil {
				t.Errorf("version 1 read version 2 fields: %+v", v1)
			}
		})
	}
}

func TestValidEmoji(t *testing.T) {
	for _, e := range []string{"👍", "👍🏽", "❤️", "❤", "🐼", "👨‍👩‍👧‍👦", "👩🏽‍🤝‍👨🏿", "🇨🇳", "1️⃣", "#⃣", "🏴󠁧󠁢󠁥󠁮󠁧󠁿", "©", "☺️", "🫠"} {
		if !protocol.ValidEmoji([]byte(e)) {
			t.Errorf("%q (%+q) refused", e, e)
		}
	}
	for _, e := range []string{"", "a", "ok", "1", "👍👍", "👍 ", " 👍", "👍a", "🇨", "🇨🇳🇨", "‍👍", "👍‍", "🏽", "️", "\xff", "12⃣",
		"👍‍👍‍👍‍👍‍👍‍👍", strings.Repeat("🐼", 2), "中"} {
		if protocol.ValidEmoji([]byte(e)) {
			t.Errorf("%q (%+q) accepted", e, e)
		}
	}
}

func TestEventFrames(t *testing.T) {
	recall := protocol.AppendEvent(nil, &protocol.Event{ID: 9, Time: 5, Target: 7, UID: "ab", NickName: tricky})
	checkObject(t, "recall", recall, map[string]any{"type": "recall", "id": json.Number("9"), "time": json.Number("5"),
		"target": json.Number("7"), "uid": "ab", "nickName": tricky}, []string{"type", "id", "time", "target", "uid", "nickName"})
	react := protocol.AppendEvent(nil, &protocol.Event{ID: 10, Time: 6, Target: 7, UID: "ab", NickName: "n", Emoji: "👍", On: false})
	checkObject(t, "reaction", react, map[string]any{"type": "reaction", "id": json.Number("10"), "time": json.Number("6"),
		"target": json.Number("7"), "emoji": "👍", "on": false, "uid": "ab", "nickName": "n"}, []string{"type", "id", "time", "target", "emoji", "on", "uid", "nickName"})
	for _, ev := range [][]byte{recall, react} {
		if !protocol.StoredEvent(ev) || protocol.StoredRecalled(ev) || protocol.StoredUID(ev) != "ab" {
			t.Errorf("%s: not read back as an event of ab", ev)
		}
		if _, ok := protocol.RecallStub(ev); ok {
			t.Errorf("an event can be recalled: %s", ev)
		}
		// Events reach readers as stored, with the cid last on the sender's connection.
		cid := "c1"
		checkObject(t, "event with cid", protocol.AppendFrameOf(nil, ev, true, &cid, "http://b", true), mergeKV(decodeMap(t, ev), "cid", "c1"), nil)
		if got := protocol.AppendFrameOf(nil, ev, false, nil, "http://b", false); string(got) != string(ev) {
			t.Errorf("event frame = %s, want %s", got, ev)
		}
	}
	if got := protocol.StoredRecallTarget(recall); got != 7 {
		t.Errorf("StoredRecallTarget(recall) = %d", got)
	}
	if got := protocol.StoredRecallTarget(react); got != 0 {
		t.Errorf("StoredRecallTarget(reaction) = %d", got)
	}
	checkObject(t, "typing", protocol.Typing("ab", tricky), map[string]any{"type": "typing", "uid": "ab", "nickName": tricky}, []string{"type", "uid", "nickName"})
}

func decodeMap(t *testing.T, b []byte) map[string]any {
	t.Helper()
	m, _ := decode(t, b)
	return m
}

func mergeKV(m map[string]any, k string, v any) map[string]any {
	m[k] = v
	return m
}

func TestMentionsAndRecallStub(t *testing.T) {
	rec := protocol.Record{ID: 4, Number: 2, Time: 9, UID: "ab", NickName: tricky, AvatarURL: "/media/x", Kind: protocol.KindText,
		Content: `secret "]}` + tricky, Mentions: "u1,u-2"}
	stored := protocol.AppendRecord(nil, &rec)
	base := map[string]any{"id": json.Number("4"), "number": json.Number("2"), "time": json.Number("9"), "uid": "ab", "nickName": tricky}
	want := mergeKV(mergeKV(mergeKV(copyMap(base), "text", true), "content", rec.Content), "mentions", []any{"u1", "u-2"})
	checkObject(t, "stored with mentions", stored, mergeKV(copyMap(want), "avatarUrl", "/media/x"),
		[]string{"id", "number", "time", "uid", "nickName", "avatarUrl", "text", "content", "mentions"})
	for _, uid := range []string{"u1", "u-2"} {
		if !protocol.StoredMentions(stored, uid) {
			t.Errorf("StoredMentions(%s) = false", uid)
		}
	}
	for _, uid := range []string{"u", "u-", "ab", ""} {
		if protocol.StoredMentions(stored, uid) {
			t.Errorf("StoredMentions(%q) = true", uid)
		}
	}
	// Version 2 sees the mentions, version 1 the message without them.
	cid := "k"
	v2 := protocol.AppendFrameOf(nil, stored, false, &cid, "http://b", true)
	checkObject(t, "v2 frame", v2, mergeKV(mergeKV(mergeKV(copyMap(want), "type", "remote"), "avatarUrl", "http://b/media/x"), "cid", "k"), nil)
	v1 := protocol.AppendFrameOf(nil, stored, true, &cid, "http://b", false)
	w1 := mergeKV(mergeKV(mergeKV(copyMap(want), "type", "user"), "avatarUrl", "http://b/media/x"), "cid", "k")
	delete(w1, "mentions")
	checkObject(t, "v1 frame", v1, w1, []string{"type", "id", "number", "time", "uid", "nickName", "avatarUrl", "text", "content", "cid"})
	if v1 := protocol.AppendFrameOf(nil, stored, true, nil, "http://b", false); strings.Contains(string(v1), "mentions") {
		t.Errorf("v1 frame without cid has mentions: %s", v1)
	}

	// A recall keeps who and when, and nothing of what was said.
	for _, r := range []protocol.Record{rec, {ID: 5, UID: "ab", Kind: protocol.KindGallery, URL: "/media/y"}} {
		stored := protocol.AppendRecord(nil, &r)
		stub, ok := protocol.RecallStub(stored)
		if !ok || !protocol.StoredRecalled(stub) || protocol.StoredEvent(stub) || protocol.StoredUID(stub) != "ab" {
			t.Fatalf("stub %s (%v)", stub, ok)
		}
		m := decodeMap(t, stub)
		for _, k := range []string{"text", "content", "gallery", "url", "mentions"} {
			if _, has := m[k]; has {
				t.Errorf("stub %s keeps %s", stub, k)
			}
		}
		if m["recalled"] != true || m["id"] != json.Number(uintString(r.ID)) {
			t.Errorf("stub %s", stub)
		}
		if _, ok := protocol.RecallStub(stub); ok {
			t.Errorf("a stub can be recalled again")
		}
		if protocol.StoredRecalled(stored) || protocol.StoredEvent(stored) {
			t.Errorf("%s read as recalled or an event", stored)
		}
		h := protocol.AppendHistoryItem(nil, stub, false, "", true, []byte(`{"👍":2}`), nil)
		if m := decodeMap(t, h); m["recalled"] != true || m["type"] != "remote" {
			t.Errorf("history item of a stub: %s", h)
		}
	}
}

func TestAppendHistoryItem(t *testing.T) {
	stored := protocol.AppendRecord(nil, &protocol.Record{ID: 3, UID: "ab", Kind: protocol.KindText, Content: "x", Mentions: "cd"})
	counts, mine := []byte(`{"👍":2,"❤️":1}`), []byte(`["👍"]`)
	m := decodeMap(t, protocol.AppendHistoryItem(nil, stored, true, "", true, counts, mine))
	if m["type"] != "user" || m["mentions"] == nil || m["myReactions"] == nil {
		t.Errorf("v2 item: %v", m)
	}
	if r, _ := m["reactions"].(map[string]any); r["👍"] != json.Number("2") || r["❤️"] != json.Number("1") {
		t.Errorf("v2 reactions: %v", m["reactions"])
	}
	m = decodeMap(t, protocol.AppendHistoryItem(nil, stored, false, "", true, counts, nil))
	if _, has := m["myReactions"]; has {
		t.Errorf("myReactions without own reactions: %v", m)
	}
	m = decodeMap(t, protocol.AppendHistoryItem(nil, stored, false, "", false, counts, mine))
	for _, k := range []string{"reactions", "myReactions", "mentions"} {
		if _, has := m[k]; has {
			t.Errorf("v1 item has %s: %v", k, m)
		}
	}
}

func copyMap(m map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	return out
}
