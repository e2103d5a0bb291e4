package protocol_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/pandachat/pandachat/protocol"
)

// tricky values for string fields: every encoder must keep the frame valid JSON.
const tricky = "Bob \"the\" \\ <script>&amp;</script>\n\t\x00\x1f\u2028\u2029 熊猫🐼"

// decode parses a frame as one JSON object and returns it with its keys in order.
func decode(t *testing.T, frame []byte) (map[string]any, []string) {
	t.Helper()
	if !utf8.Valid(frame) {
		t.Fatalf("frame is not UTF-8: %q", frame)
	}
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(frame))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatalf("frame %s is not a JSON object: %v", frame, err)
	}
	if d.More() {
		t.Fatalf("frame %s has data after the object", frame)
	}
	var keys []string
	d = json.NewDecoder(bytes.NewReader(frame))
	d.Token() // {
	for depth := 1; depth > 0; {
		tok, err := d.Token()
		if err != nil {
			t.Fatal(err)
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		default:
			if k, ok := tok.(string); ok && depth == 1 {
				keys = append(keys, k)
				v, err := d.Token() // the value
				if err != nil {
					t.Fatal(err)
				}
				if v == json.Delim('{') || v == json.Delim('[') {
					depth++
				}
			}
		}
	}
	return m, keys
}

func checkObject(t *testing.T, what string, frame []byte, want map[string]any, order []string) {
	t.Helper()
	got, keys := decode(t, frame)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %s\ndecoded %v\nwant    %v", what, frame, got, want)
	}
	if order != nil && !reflect.DeepEqual(keys, order) {
		t.Errorf("%s: keys %v, want %v", what, keys, order)
	}
}

func TestAppendRecordAndChat(t *testing.T) {
	cid := `c"1</`
	for _, tt := range []struct {
		name string
		rec  protocol.Record
		kind map[string]any // the kind's fields
	}{
		{"text", protocol.Record{ID: 1, Number: 3, Time: 1717000000123, UID: "ab12", NickName: tricky, AvatarURL: "https://x/a.png", Kind: protocol.KindText, Content: tricky},
			map[string]any{"text": true, "content": tricky}},
		{"gallery", protocol.Record{ID: 1<<64 - 1, Number: 0, Time: 0, UID: "", NickName: "", AvatarURL: "", Kind: protocol.KindGallery, URL: "https://x/media/1?a=1&b=<2>"},
			map[string]any{"gallery": true, "url": "https://x/media/1?a=1&b=<2>"}},
		{"invalid UTF-8", protocol.Record{ID: 7, UID: "u", NickName: "\xff", Kind: protocol.KindText, Content: "a\xc3"},
			map[string]any{"text": true, "content": "a\ufffd"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.rec
			nick := string([]rune(r.NickName)) // invalid bytes read back as U+FFFD
			stored := protocol.AppendRecord([]byte("prefix"), &r)
			if !bytes.HasPrefix(stored, []byte("prefix")) {
				t.Fatalf("AppendRecord lost the buffer's contents: %s", stored)
			}
			stored = stored[len("prefix"):]
			want := map[string]any{
				"id": json.Number(uintString(r.ID)), "number": json.Number(intString(int64(r.Number))),
				"time": json.Number(intString(r.Time)), "uid": r.UID, "nickName": nick, "avatarUrl": r.AvatarURL,
			}
			for k, v := range tt.kind {
				want[k] = v
			}
			order := []string{"id", "number", "time", "uid", "nickName", "avatarUrl"}
			if r.Kind == protocol.KindGallery {
				order = append(order, "gallery", "url")
			} else {
				order = append(order, "text", "content")
			}
			checkObject(t, "AppendRecord", stored, want, order)
			if got := protocol.StoredUID(stored); got != r.UID {
				t.Errorf("StoredUID = %q, want %q", got, r.UID)
			}
			if got := protocol.StoredTime(stored); got != r.Time {
				t.Errorf("StoredTime = %d, want %d", got, r.Time)
			}

			for _, c := range []struct {
				own  bool
				cid  *string
				typ  string
				tail []string
			}{
				{true, nil, "user", nil},
				{false, nil, "remote", nil},
				{true, &cid, "user", []string{"cid"}},
				{false, &cid, "remote", []string{"cid"}},
			} {
				w := map[string]any{"type": c.typ}
				for k, v := range want {
					w[k] = v
				}
				if c.cid != nil {
					w["cid"] = *c.cid
				}
				o := append(append([]string{"type"}, order...), c.tail...)
				frame := protocol.AppendChat([]byte("x"), stored, c.own, c.cid, "")
				checkObject(t, "AppendChat", frame[1:], w, o)
			}
		})
	}
}

func uintString(v uint64) string { b, _ := json.Marshal(v); return string(b) }
func intString(v int64) string   { b, _ := json.Marshal(v); return string(b) }

func TestServerFrames(t *testing.T) {
	cid := "c-" + tricky
	for _, tt := range []struct {
		name  string
		frame []byte
		want  map[string]any
		order []string
	}{
		{"system", protocol.System(3), map[string]any{"type": "system", "num": json.Number("3")}, []string{"type", "num"}},
		{"system zero", protocol.System(0), map[string]any{"type": "system", "num": json.Number("0")}, nil},
		{"presence join", protocol.Presence(2, "join", "ab12", tricky),
			map[string]any{"type": "presence", "num": json.Number("2"), "event": "join", "uid": "ab12", "nickName": tricky},
			[]string{"type", "num", "event", "uid", "nickName"}},
		{"presence leave", protocol.Presence(0, "leave", "", ""),
			map[string]any{"type": "presence", "num": json.Number("0"), "event": "leave", "uid": "", "nickName": ""}, nil},
		{"error", protocol.ErrorFrame(protocol.ErrBadMessage, tricky, nil),
			map[string]any{"type": "error", "error": "ERR_BAD_MESSAGE", "message": tricky},
			[]string{"type", "error", "message"}},
		{"error with cid", protocol.ErrorFrame(protocol.ErrRateLimited, "slow down", &cid),
			map[string]any{"type": "error", "error": "ERR_RATE_LIMITED", "message": "slow down", "cid": cid},
			[]string{"type", "error", "message", "cid"}},
		{"error with empty cid", protocol.ErrorFrame(protocol.ErrBadMessage, "", new(string)),
			map[string]any{"type": "error", "error": "ERR_BAD_MESSAGE", "message": "", "cid": ""}, nil},
		{"session error", protocol.SessionError(protocol.ErrInvalidSession, tricky),
			map[string]any{protocol.Magic: json.Number("1"), "error": "ERR_INVALID_SESSION", "message": tricky},
			[]string{protocol.Magic, "error", "message"}},
	} {
		checkObject(t, tt.name, tt.frame, tt.want, tt.order)
	}
}

func TestAppendString(t *testing.T) {
	for _, tt := range []struct {
		name, in, want string // want: the decoded value
	}{
		{"empty", "", ""},
		{"plain", "hello world", "hello world"},
		{"quote and backslash", `say "hi" \ bye`, `say "hi" \ bye`},
		{"control characters", "\x00\x01\x07\b\f\n\r\t\x1b\x1f\x7f", "\x00\x01\x07\b\f\n\r\t\x1b\x1f\x7f"},
		{"html", "</script><!-- & -->", "</script><!-- & -->"},
		{"line separators", "a\u2028b\u2029c", "a\u2028b\u2029c"},
		{"multi-byte", "熊猫 🐼 é", "熊猫 🐼 é"},
		{"U+FFFD itself", "\ufffd", "\ufffd"},
		{"invalid byte", "a\xffb", "a\ufffdb"},
		{"truncated sequence", "a\xe7\x86", "a\ufffd\ufffd"},
		{"surrogate half", "\xed\xa0\x80", "\ufffd\ufffd\ufffd"},
		{"overlong slash", "\xc0\xaf", "\ufffd\ufffd"},
		{"invalid at end", "ok\xc3", "ok\ufffd"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out := protocol.AppendString([]byte("[1,"), tt.in)
			if !bytes.HasPrefix(out, []byte("[1,")) {
				t.Fatalf("lost the buffer's contents: %q", out)
			}
			out = out[len("[1,"):]
			checkSafeString(t, out)
			var got string
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("%q is not a JSON string: %v", out, err)
			}
			if got != tt.want {
				t.Errorf("decoded %q, want %q (encoded %s)", got, tt.want, out)
			}
		})
	}
}

// What needs no escape is copied as it is: printable ASCII from the space on,
// and valid multi-byte UTF-8.
func TestAppendStringCopiesPlainText(t *testing.T) {
	var plain []byte
	for c := byte(0x20); c < 0x7f; c++ {
		if c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
			plain = append(plain, c)
		}
	}
	for _, s := range []string{string(plain), " ", "a b", "熊猫 🐼 é", " \u00a0\u2027\u202a "} {
		if got, want := string(protocol.AppendString(nil, s)), `"`+s+`"`; got != want {
			t.Errorf("AppendString(%q) = %s, want %s", s, got, want)
		}
	}
}

// checkSafeString: valid UTF-8, a single JSON string, nothing that could end a
// <script> or a JavaScript string literal.
func checkSafeString(t *testing.T, out []byte) {
	t.Helper()
	if !utf8.Valid(out) || !json.Valid(out) || len(out) < 2 || out[0] != '"' || out[len(out)-1] != '"' {
		t.Fatalf("not a valid JSON string: %q", out)
	}
	for _, bad := range []string{"<", ">", "&", "\u2028", "\u2029"} {
		if bytes.Contains(out, []byte(bad)) {
			t.Errorf("%q contains a raw %q", out, bad)
		}
	}
	for _, c := range out {
		if c < 0x20 {
			t.Errorf("%q contains a raw control byte %#x", out, c)
		}
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", tricky, "\xff\xfe", "\xed\xa0\x80", "</script>", "\u2028", `"\`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := protocol.AppendString(nil, s)
		checkSafeString(t, out)
		var got string
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("%q is not a JSON string: %v", out, err)
		}
		if want := string([]rune(s)); got != want { // each invalid byte reads back as U+FFFD
			t.Fatalf("AppendString(%q) decodes to %q, want %q", s, got, want)
		}
		if utf8.ValidString(s) && got != s {
			t.Fatalf("valid UTF-8 %q came back as %q", s, got)
		}
	})
}

func TestStoredUID(t *testing.T) {
	for _, tt := range []struct{ name, stored, want string }{
		{"record", string(protocol.AppendRecord(nil, &protocol.Record{ID: 5, UID: "0123abcd", NickName: `x","uid":"evil`})), "0123abcd"},
		{"nickName that looks like a uid", string(protocol.AppendRecord(nil, &protocol.Record{ID: 5, UID: "real", NickName: `,"uid":"fake"`})), "real"},
		{"empty uid", `{"id":1,"number":1,"time":1,"uid":"","nickName":"n"}`, ""},
		{"no uid", `{"id":1,"number":1}`, ""},
		{"unterminated", `{"id":1,"uid":"abc`, ""},
		{"empty", ``, ""},
		{"uid first", `,"uid":"u1","id":1}`, "u1"},
	} {
		if got := protocol.StoredUID([]byte(tt.stored)); got != tt.want {
			t.Errorf("%s: StoredUID(%s) = %q, want %q", tt.name, tt.stored, got, tt.want)
		}
	}
}

func TestStoredTime(t *testing.T) {
	for _, tt := range []struct {
		name, stored string
		want         int64
	}{
		{"record", string(protocol.AppendRecord(nil, &protocol.Record{ID: 5, Time: 1234567890999, UID: "u"})), 1234567890999},
		{"every digit", `{"id":1,"time":9876543210,"uid":"u"}`, 9876543210},
		{"time first", `,"time":42}`, 42},
		{"zero", `{"id":1,"time":0,"uid":"u"}`, 0},
		{"no time", `{"id":1,"uid":"u"}`, 0},
		{"empty", ``, 0},
	} {
		if got := protocol.StoredTime([]byte(tt.stored)); got != tt.want {
			t.Errorf("%s: StoredTime(%s) = %d, want %d", tt.name, tt.stored, got, tt.want)
		}
	}
}

func BenchmarkAppendChatFrame(b *testing.B) {
	rec := protocol.Record{
		ID: 123456, Number: 250, Time: 1717000000123, UID: "0123456789abcdef01234567",
		NickName: "熊猫 Panda", AvatarURL: "https://chat.example.com/media/0123456789abcdef",
		Kind: protocol.KindText, Content: strings.Repeat("hello <world> ", 8),
	}
	stored := protocol.AppendRecord(nil, &rec)
	cid := "c-42"
	for _, bm := range []struct {
		name string
		own  bool
		cid  *string
	}{{"remote", false, nil}, {"user+cid", true, &cid}} {
		b.Run(bm.name, func(b *testing.B) {
			buf := make([]byte, 0, 1024)
			b.ReportAllocs()
			for b.Loop() {
				var start int
				buf, start = protocol.BeginFrame(buf[:0])
				buf = protocol.AppendChat(buf, stored, bm.own, bm.cid, "")
				buf = protocol.EndFrame(buf, start)
			}
			b.SetBytes(int64(len(buf)))
		})
	}
	b.Run("record+frame", func(b *testing.B) {
		buf := make([]byte, 0, 1024)
		b.ReportAllocs()
		for b.Loop() {
			stored = protocol.AppendRecord(stored[:0], &rec)
			buf = protocol.TextFrame(protocol.AppendChat(buf[:0], stored, false, nil, ""))
		}
	})
}

// The base goes in front of a path wherever its field is, also first in the
// object, and a stored object cut short after the path's '/' is read no further.
func TestAppendChatBaseEdges(t *testing.T) {
	const base = "https://chat.example.com"
	for _, tt := range []struct{ name, stored, want string }{
		{"path first", `{"avatarUrl":"/a.png","id":1}`, `{"type":"remote","avatarUrl":"https://chat.example.com/a.png","id":1}`},
		{"url first", `{"url":"/media/x","id":1}`, `{"type":"remote","url":"https://chat.example.com/media/x","id":1}`},
		{"cut after the slash", `{"id":1,"avatarUrl":"/`, `{"type":"remote","id":1,"avatarUrl":"https://chat.example.com/`},
		{"protocol-relative, cut", `{"id":1,"avatarUrl":"//`, `{"type":"remote","id":1,"avatarUrl":"//`},
	} {
		if got := string(protocol.AppendChat(nil, []byte(tt.stored), false, nil, base)); got != tt.want {
			t.Errorf("%s: AppendChat(%s) = %s, want %s", tt.name, tt.stored, got, tt.want)
		}
	}
}

// Paths of this server stored in a message become absolute with the reader's
// base; other URLs and the text itself are left alone.
func TestAppendChatBase(t *testing.T) {
	rows := []struct {
		rec         protocol.Record
		avatar, url string
	}{
		{protocol.Record{ID: 1, UID: "u", AvatarURL: "/avatar/default.png", Kind: protocol.KindText, Content: `"url":"/x" and "avatarUrl":"/y"`},
			"https://chat.example.com/avatar/default.png", ""},
		{protocol.Record{ID: 2, UID: "u", AvatarURL: "/media/ab", Kind: protocol.KindGallery, URL: "/media/cd"},
			"https://chat.example.com/media/ab", "https://chat.example.com/media/cd"},
		{protocol.Record{ID: 3, UID: "u", AvatarURL: "https://wx.qlogo.cn/a", Kind: protocol.KindGallery, URL: "https://img.example.org/p.png"},
			"https://wx.qlogo.cn/a", "https://img.example.org/p.png"},
		{protocol.Record{ID: 4, UID: "u", AvatarURL: "//cdn.example/a", Kind: protocol.KindText, Content: "x"},
			"//cdn.example/a", ""},
	}
	for _, r := range rows {
		stored := protocol.AppendRecord(nil, &r.rec)
		cid := "c1"
		for _, c := range []*string{nil, &cid} {
			var m map[string]any
			if err := json.Unmarshal(protocol.AppendChat(nil, stored, false, c, "https://chat.example.com"), &m); err != nil {
				t.Fatalf("id %d: %v", r.rec.ID, err)
			}
			if m["avatarUrl"] != r.avatar {
				t.Errorf("id %d: avatarUrl %v, want %s", r.rec.ID, m["avatarUrl"], r.avatar)
			}
			if r.url != "" && m["url"] != r.url {
				t.Errorf("id %d: url %v, want %s", r.rec.ID, m["url"], r.url)
			}
			if r.rec.Kind == protocol.KindText && m["content"] != r.rec.Content {
				t.Errorf("id %d: content changed to %v", r.rec.ID, m["content"])
			}
			if c != nil && m["cid"] != cid {
				t.Errorf("id %d: cid %v", r.rec.ID, m["cid"])
			}
		}
	}
}
