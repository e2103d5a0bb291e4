package protocol_test

import (
	"strings"
	"testing"

	"github.com/pandachat/pandachat/protocol"
)

// TestScannerEdgesMatchEncodingJSON: frames at the edges the scanner's fast paths choose
// between, against encoding/json: a key that is not ASCII and still names a field (ſ folds to
// s), a \u escape that ends the data one byte before the closing quote or with it, and
// strings and contents around the eight bytes read at a time.
func TestScannerEdgesMatchEncodingJSON(t *testing.T) {
	frames := []string{
		`{"text":true,"content":"x","mentionſ":["a1"]}`, `{"text":true,"content":"x","MENTIONſ":["a1"]}`,
		`{"text":true,"content":"x","\u006dentions":["a1"]}`, `{"ſ":true,"text":true,"content":"x"}`,
		`"\u0041"`, `"ab\u0041"`, `"\u0041`, `"\u004`, ` "\u0041"`, `{"a":"\u0041"}`, `["\u0041"]`,
	}
	for n := 1; n <= 17; n++ {
		s := strings.Repeat("a", n)
		frames = append(frames, `"`+s+`"`, `"`+s, `{"text":true,"content":"`+s+`"}`,
			`{"text":true,"content":"`+strings.Repeat("é", n)+`"}`, `{"text":true,"content":"`+s+`é"}`)
	}
	for _, f := range frames {
		sameAsReference(t, []byte(f), 3)
		sameAsReference(t, []byte(f), 20)
	}
}

// TestNonASCIIKeyNamesAField: "mentionſ" is "mentions" under encoding/json's folding.
func TestNonASCIIKeyNamesAField(t *testing.T) {
	m, bad := protocol.ParseClientMessageV2([]byte(`{"text":true,"content":"hi","mentionſ":["bob"]}`), 100)
	if bad != nil || m.Mentions() != "bob" {
		t.Fatalf("got %+v %v, want the mention bob", m, bad)
	}
}

// Mentions: uids of exactly the allowed bytes (the edges of each range) pass, the bytes
// just outside them do not; the list comes back in order, without duplicates.
func TestMentionUIDBytes(t *testing.T) {
	frame := func(uids ...string) []byte {
		return []byte(`{"text":true,"content":"x","mentions":["` + strings.Join(uids, `","`) + `"]}`)
	}
	m, bad := protocol.ParseClientMessageV2(frame("az", "AZ", "09", "_-", "az", "a", "z", "A", "Z", "0", "9"), 100)
	if bad != nil {
		t.Fatal(bad)
	}
	if got := strings.Join(m.MentionList(), " "); got != "az AZ 09 _- a z A Z 0 9" {
		t.Errorf("mentions %q", got)
	}
	for _, c := range []string{"`", "{", "@", "[", "/", ":", "^", ".", " "} {
		if _, bad := protocol.ParseClientMessageV2(frame("a"+c), 100); bad == nil {
			t.Errorf("uid %q accepted", "a"+c)
		}
	}
	if m, _ := protocol.ParseClientMessageV2([]byte(`{"text":true,"content":"x"}`), 100); m.MentionList() != nil {
		t.Errorf("no mentions: MentionList = %q, want nil", m.MentionList())
	}
}

// Content, cid and mentions share one allocation, whichever of them is the longest.
func TestMentionsShareOneAllocation(t *testing.T) {
	long := strings.Repeat("u", protocol.MaxUIDLen)
	uids := make([]string, protocol.MaxMentions)
	for i := range uids {
		uids[i] = long[:protocol.MaxUIDLen-2] + string(rune('a'+i)) + string(rune('a'+i))
	}
	for _, f := range []string{
		`{"text":true,"content":"x","cid":"c","mentions":["` + strings.Join(uids, `","`) + `"]}`,
		`{"text":true,"content":"x","cid":"` + strings.Repeat("c", protocol.MaxCIDLen) + `","mentions":["a"]}`,
		`{"text":true,"content":"` + strings.Repeat("x", 500) + `","cid":"c","mentions":["a"]}`,
	} {
		data := []byte(f)
		m, bad := protocol.ParseClientMessageV2(data, 1000)
		if bad != nil || m.Mentions() == "" || m.CID == "" {
			t.Fatalf("%s: %+v %v", f, m, bad)
		}
		sameAsReference(t, data, 1000)
		if n := testing.AllocsPerRun(20, func() { protocol.ParseClientMessageV2(data, 1000) }); n != 2 {
			t.Errorf("%.80s…: %.0f allocations, want 2 (the strings and the Ext)", f, n)
		}
	}
}

// ValidEmoji at the edges of its ranges and limits.
func TestValidEmojiEdges(t *testing.T) {
	tag := func(n int) string { return strings.Repeat("\U000E0061", n) }
	for in, want := range map[string]bool{
		"🇦🇿": true, "🇿🇦": true, "🇦": false, // regional indicators, first and last
		"🏻": false, "🏿": false, "👍🏻": true, "👍🏿": true, // skin tones: only after something
		"\U0001FAFF": true, "\U0001F000": true, "\U0001EFFF": false, // the pictograph block, unassigned ends included
		"🏴\U000E0020": true, "🏴\U000E007F": true, "🏴\U000E001F": false, "🏴\U000E0080": false, // tag characters
		"🏴" + tag(7): true, "🏴" + tag(7) + "\uFE0F": false, // 32 bytes, then 35
		"©" + strings.Repeat("\uFE0F", 9): true, "©" + strings.Repeat("\uFE0F", 10): false, // 10 characters, then 11 (32 bytes)
		"1\uFE0F\u20E3": true, "1\u20E3": true, "1\uFE0F": false, "1\uFE0F\uFE0F\u20E3": false, "1": false, // keycaps
		"👍\u200D": false, "👍\u200D👍": true, "👍👍": false,
	} {
		if got := protocol.ValidEmoji([]byte(in)); got != want {
			t.Errorf("ValidEmoji(%+q) = %v, want %v", in, got, want)
		}
	}
}
