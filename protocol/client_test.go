package protocol_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/pandachat/pandachat/protocol"
)

func TestParseClientMessage(t *testing.T) {
	const max = 5
	five := "熊猫🐼猫熊"   // 5 runes, 17 bytes
	six := five + "é" // 6 runes
	longCID := strings.Repeat("猫", protocol.MaxCIDLen)
	for _, tt := range []struct {
		name  string
		frame string
		want  protocol.ClientMessage // Kind 0: refused
		// for refusals: the cid kept in the error
		badCID    string
		badHasCID bool
	}{
		{name: "text", frame: `{"text":true,"content":"hello"}`,
			want: protocol.ClientMessage{Kind: protocol.KindText, Content: "hello"}},
		{name: "gallery", frame: `{"gallery":true,"url":"https://chat.example.com/media/abc"}`,
			want: protocol.ClientMessage{Kind: protocol.KindGallery, URL: "https://chat.example.com/media/abc"}},
		{name: "gallery path", frame: `{"gallery":true,"url":" /media/abc "}`,
			want: protocol.ClientMessage{Kind: protocol.KindGallery, URL: "/media/abc"}},
		{name: "cid echoed", frame: `{"text":true,"content":"hi","cid":"c-1"}`,
			want: protocol.ClientMessage{Kind: protocol.KindText, Content: "hi", CID: "c-1", HasCID: true}},
		{name: "empty cid is a cid", frame: `{"text":true,"content":"hi","cid":""}`,
			want: protocol.ClientMessage{Kind: protocol.KindText, Content: "hi", CID: "", HasCID: true}},
		{name: "null cid is none", frame: `{"text":true,"content":"hi","cid":null}`,
			want: protocol.ClientMessage{Kind: protocol.KindText, Content: "hi"}},
		{name: "cid at the limit", frame: `{"text":true,"content":"hi","cid":"` + longCID + `"}`,
			want: protocol.ClientMessage{Kind: protocol.KindText, Content: "hi", CID: longCID, HasCID: true}},
		{name: "content trimmed", frame: `{"text":true,"content":" \t\n hi 熊 \u3000\r\n"}`,
			want: protocol.ClientMessage{Kind: protocol.KindText, Content: "hi 熊"}},
		{name: "content at the limit", frame: `{"text":true,"content":"` + five + `"}`,
			want: protocol.ClientMessage{Kind: protocol.KindText, Content: five}},
		{name: "limit counted after trimming", frame: `{"text":true,"content":"   ` + five + `   "}`,
			want: protocol.ClientMessage{Kind: protocol.KindText, Content: five}},
		{name: "escaped content", frame: `{"text":true,"content":"\u003cb\u003e\"\n"}`,
			want: protocol.ClientMessage{Kind: protocol.KindText, Content: "<b>\""}},
		{name: "other kind false", frame: `{"text":true,"gallery":false,"content":"hi","url":"x"}`,
			want: protocol.ClientMessage{Kind: protocol.KindText, Content: "hi"}},
		{name: "fields a client may not set are ignored",
			frame: `{"type":"system","id":99,"uid":"admin","nickName":"Admin","avatarUrl":"https://evil/","time":1,"number":1000,"text":true,"content":"hi"}`,
			want:  protocol.ClientMessage{Kind: protocol.KindText, Content: "hi"}},
		{name: "ignored fields of any type", frame: `{"type":{},"id":"x","time":[1],"number":null,"text":true,"content":"hi"}`,
			want: protocol.ClientMessage{Kind: protocol.KindText, Content: "hi"}},

		{name: "keys in any case", frame: `{"TEXT":true,"Content":"hi","CiD":"c"}`,
			want: protocol.ClientMessage{Kind: protocol.KindText, Content: "hi", CID: "c", HasCID: true}},
		{name: "escaped keys", frame: `{"\u0074ext":true,"CONT\u0065NT":"hi"}`,
			want: protocol.ClientMessage{Kind: protocol.KindText, Content: "hi"}},
		{name: "the last duplicate wins", frame: `{"text":false,"content":"a","text":true,"content":"b"}`,
			want: protocol.ClientMessage{Kind: protocol.KindText, Content: "b"}},
		{name: "a null cid after a cid", frame: `{"text":true,"content":"hi","cid":"c","cid":null}`,
			want: protocol.ClientMessage{Kind: protocol.KindText, Content: "hi"}},
		{name: "a cid after a cid of another type", frame: `{"text":true,"content":"hi","cid":[1],"cid":"c"}`,
			want: protocol.ClientMessage{Kind: protocol.KindText, Content: "hi", CID: "c", HasCID: true}},
		{name: "surrogate pair", frame: `{"text":true,"content":"\ud83d\udc3c"}`,
			want: protocol.ClientMessage{Kind: protocol.KindText, Content: "🐼"}},
		{name: "lone surrogates and bad UTF-8 become U+FFFD", frame: "{\"text\":true,\"content\":\"\\ud83dx\\udc3c\xff\"}",
			want: protocol.ClientMessage{Kind: protocol.KindText, Content: "\uFFFDx\uFFFD\uFFFD"}},
		{name: "unknown values of any shape and depth", frame: `{"a":{"b":[1,-0.5e+10,{"c":null}],"d":true},"e":1e999,"text":true,"content":"hi"}`,
			want: protocol.ClientMessage{Kind: protocol.KindText, Content: "hi"}},
		{name: "10000 levels", frame: `{"text":true,"content":"hi","a":` + strings.Repeat("[", 9999) + strings.Repeat("]", 9999) + `}`,
			want: protocol.ClientMessage{Kind: protocol.KindText, Content: "hi"}},
		{name: "whitespace around", frame: " \r\n\t{ \"text\" : true , \"content\" : \"hi\" } \n",
			want: protocol.ClientMessage{Kind: protocol.KindText, Content: "hi"}},

		{name: "content one past the limit", frame: `{"text":true,"content":"` + six + `","cid":"c"}`, badCID: "c", badHasCID: true},
		{name: "empty content", frame: `{"text":true,"content":"","cid":"c"}`, badCID: "c", badHasCID: true},
		{name: "whitespace content", frame: `{"text":true,"content":" \t\r\n\u3000 "}`},
		{name: "text without content", frame: `{"text":true}`},
		{name: "null content", frame: `{"text":true,"content":null}`},
		{name: "gallery without url", frame: `{"gallery":true,"cid":"g"}`, badCID: "g", badHasCID: true},
		{name: "gallery with blank url", frame: `{"gallery":true,"url":"  "}`},
		{name: "both kinds", frame: `{"text":true,"gallery":true,"content":"hi","url":"/media/a","cid":"b"}`, badCID: "b", badHasCID: true},
		{name: "neither kind", frame: `{"content":"hi","cid":"n"}`, badCID: "n", badHasCID: true},
		{name: "kinds false", frame: `{"text":false,"gallery":false,"content":"hi"}`},
		{name: "empty object", frame: `{}`},
		{name: "text is a string", frame: `{"text":"yes","content":"hi"}`},
		{name: "text is a number", frame: `{"text":1,"content":"hi"}`},
		{name: "content is a number", frame: `{"text":true,"content":42}`},
		{name: "url is an object", frame: `{"gallery":true,"url":{}}`},
		{name: "cid is a number", frame: `{"text":true,"content":"hi","cid":7}`},
		{name: "cid is an object", frame: `{"text":true,"content":"hi","cid":{"a":1}}`},
		{name: "cid too long", frame: `{"text":true,"content":"hi","cid":"` + longCID + `x"}`},
		{name: "null content after content", frame: `{"text":true,"content":"hi","content":null,"cid":"c"}`, badCID: "c", badHasCID: true},
		{name: "null text after text", frame: `{"text":true,"text":null,"content":"hi","cid":"c"}`, badCID: "c", badHasCID: true},
		{name: "wrong type after a good value", frame: `{"text":true,"content":"hi","cid":"c","text":"yes"}`},
		{name: "cid of another type last", frame: `{"text":true,"content":"hi","cid":"c","cid":1}`},
		{name: "10001 levels", frame: `{"text":true,"content":"hi","a":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`},
		{name: "byte order mark", frame: "\xef\xbb\xbf{\"text\":true,\"content\":\"hi\"}"},
		{name: "number with a leading zero", frame: `{"text":true,"content":"hi","n":01}`},
		{name: "raw control character in a string", frame: "{\"text\":true,\"content\":\"a\tb\"}"},
		{name: "unknown escape", frame: `{"text":true,"content":"\x"}`},
		{name: "trailing comma", frame: `{"text":true,"content":"hi",}`},
		{name: "invalid JSON", frame: `{"text":true,"content":"hi"`},
		{name: "trailing garbage", frame: `{"text":true,"content":"hi"}x`},
		{name: "two objects", frame: `{"text":true,"content":"hi"}{}`},
		{name: "JSON array", frame: `[{"text":true,"content":"hi"}]`},
		{name: "JSON string", frame: `"hello"`},
		{name: "JSON number", frame: `42`},
		{name: "JSON null", frame: `null`},
		{name: "JSON true", frame: `true`},
		{name: "empty frame", frame: ``},
		{name: "whitespace frame", frame: " \n "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, bad := protocol.ParseClientMessage([]byte(tt.frame), max)
			if tt.want.Kind != 0 {
				if bad != nil {
					t.Fatalf("refused: %v", bad)
				}
				if got != tt.want {
					t.Fatalf("got %+v, want %+v", got, tt.want)
				}
				return
			}
			if bad == nil {
				t.Fatalf("accepted %+v, want a refusal", got)
			}
			if bad.Reason == "" || bad.Error() != bad.Reason {
				t.Errorf("refusal without a reason: %+v", bad)
			}
			if bad.CID != tt.badCID || bad.HasCID != tt.badHasCID {
				t.Errorf("refusal keeps cid %q/%v, want %q/%v", bad.CID, bad.HasCID, tt.badCID, tt.badHasCID)
			}
			if got != (protocol.ClientMessage{}) {
				t.Errorf("refusal also returned %+v", got)
			}
		})
	}
}

func TestParseClientMessageDefaultLimit(t *testing.T) {
	for _, tt := range []struct {
		max, runes int
		ok         bool
	}{
		{0, protocol.DefaultMaxContent, true},
		{0, protocol.DefaultMaxContent + 1, false},
		{-1, protocol.DefaultMaxContent, true},
		{-1, protocol.DefaultMaxContent + 1, false},
		{1, 1, true},
		{1, 2, false},
	} {
		frame, _ := json.Marshal(map[string]any{"text": true, "content": strings.Repeat("€", tt.runes)})
		_, bad := protocol.ParseClientMessage(frame, tt.max)
		if (bad == nil) != tt.ok {
			t.Errorf("max %d, %d runes: refusal %v, want ok=%v", tt.max, tt.runes, bad, tt.ok)
		}
	}
}

// TestBadMessageReasons: the reason tells a client what was wrong.
func TestBadMessageReasons(t *testing.T) {
	for _, tt := range []struct{ frame, says string }{
		{`{"text":`, "not valid JSON"},
		{`[1]`, "not a JSON object"},
		{`"x"`, "not a JSON object"},
		{`{"text":"yes"}`, "wrong type"},
		{`{"text":true,"content":"123456"}`, "limit is 5"},
		{`{"text":true,"content":"hi","cid":1}`, "cid"},
		{`{"text":true,"content":"hi","cid":{}}`, "cid must be a string"},
		{`{"text":true,"content":1}`, "content must be a string"},
		{`{"gallery":"yes"}`, "gallery must be true or false, not a string"},
		{`{"text":[true]}`, "text must be true or false, not an array"},
		{`{"url":{},"content":1}`, "url must be a string, not an object"},
		{"\xef\xbb\xbf{}", "not valid JSON"},
		{`{"a":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`, "not valid JSON"},
		{`1e999`, "not a JSON object"},
	} {
		_, bad := protocol.ParseClientMessage([]byte(tt.frame), 5)
		if bad == nil || !strings.Contains(bad.Reason, tt.says) {
			t.Errorf("%s: refusal %v, want one saying %q", tt.frame, bad, tt.says)
		}
	}
}

// checkAccepted is what every accepted message promises its caller.
func checkAccepted(t *testing.T, m protocol.ClientMessage, max int) {
	t.Helper()
	switch m.Kind {
	case protocol.KindText:
		if m.Content == "" || strings.TrimSpace(m.Content) != m.Content || !utf8.ValidString(m.Content) ||
			utf8.RuneCountInString(m.Content) > max || m.URL != "" {
			t.Fatalf("accepted text breaks the limits: %+v", m)
		}
	case protocol.KindGallery:
		if m.URL == "" || strings.TrimSpace(m.URL) != m.URL || !utf8.ValidString(m.URL) || m.Content != "" {
			t.Fatalf("accepted gallery breaks the limits: %+v", m)
		}
	case protocol.KindRecall, protocol.KindTyping:
		if m.Content != "" || m.URL != "" || m.Emoji() != "" || (m.Kind == protocol.KindRecall) != (m.Target() != 0) {
			t.Fatalf("accepted recall or typing breaks the limits: %+v", m)
		}
	case protocol.KindReact:
		if m.Target() == 0 || !protocol.ValidEmoji([]byte(m.Emoji())) || m.Content != "" || m.URL != "" {
			t.Fatalf("accepted reaction breaks the limits: %+v", m)
		}
	default:
		t.Fatalf("accepted a message of kind %d", m.Kind)
	}
	if utf8.RuneCountInString(m.CID) > protocol.MaxCIDLen || !utf8.ValidString(m.CID) || (!m.HasCID && m.CID != "") {
		t.Fatalf("accepted cid breaks the limits: %+v", m)
	}
	if m.Mentions() != "" {
		list := m.MentionList()
		if m.Kind != protocol.KindText || len(list) > protocol.MaxMentions {
			t.Fatalf("accepted mentions break the limits: %+v", m)
		}
		for i, uid := range list {
			if uid == "" || len(uid) > protocol.MaxUIDLen || strings.Trim(uid, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != "" ||
				slices.Contains(list[:i], uid) {
				t.Fatalf("accepted mention %q breaks the limits: %+v", uid, m)
			}
		}
	}
}

func FuzzParseClientMessage(f *testing.F) {
	for _, s := range []string{
		`{"text":true,"content":"hello","cid":"c-1"}`,
		`{"gallery":true,"url":"/media/abc"}`,
		`{"text":true,"gallery":true}`,
		`{"text":"yes"}`,
		`{"text":true,"content":"  \u2028 "}`,
		"{\"text\":true,\"content\":\"\xff\xfe\"}",
		`[]`, `null`, `"s"`, ``,
		`{"recall":7}`, `{"react":7,"emoji":"👍"}`, `{"typing":true}`, `{"text":true,"content":"x","mentions":["a1"]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, c := range []struct {
			max   int
			parse func([]byte, int) (protocol.ClientMessage, *protocol.BadMessage)
		}{
			{4, protocol.ParseClientMessage}, {protocol.DefaultMaxContent, protocol.ParseClientMessage},
			{4, protocol.ParseClientMessageV2}, {protocol.DefaultMaxContent, protocol.ParseClientMessageV2},
		} {
			max := c.max
			m, bad := c.parse(data, max)
			if bad != nil {
				if bad.Reason == "" || (!bad.HasCID && bad.CID != "") || utf8.RuneCountInString(bad.CID) > protocol.MaxCIDLen {
					t.Fatalf("bad refusal %+v", bad)
				}
				continue
			}
			checkAccepted(t, m, max)
			if m.Kind > protocol.KindGallery {
				continue
			}
			// What is accepted can be stored and read back unchanged.
			var back map[string]any
			rec := protocol.Record{Kind: m.Kind, Content: m.Content, URL: m.URL, Mentions: m.Mentions()}
			if err := json.Unmarshal(protocol.AppendRecord(nil, &rec), &back); err != nil {
				t.Fatalf("record of an accepted message is not JSON: %v", err)
			}
			if back["content"] != nil && back["content"] != m.Content || back["url"] != nil && back["url"] != m.URL {
				t.Fatalf("record changed the message: %v vs %+v", back, m)
			}
		}
	})
}

func BenchmarkParseClientMessage(b *testing.B) {
	for _, bm := range []struct{ name, frame string }{
		{"text", `{"text":true,"content":"` + strings.Repeat("hello 熊猫 ", 10) + `","cid":"c-12345"}`},
		{"gallery", `{"gallery":true,"url":"https://chat.example.com/media/0123456789abcdef"}`},
		{"bad", `{"text":"yes","content":"hi"}`},
	} {
		b.Run(bm.name, func(b *testing.B) {
			data := []byte(bm.frame)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				protocol.ParseClientMessage(data, protocol.DefaultMaxContent)
			}
		})
	}
}
