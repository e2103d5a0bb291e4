package protocol_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/pandachat/pandachat/protocol"
)

// referenceParse is ParseClientMessage as it was written on encoding/json: the definition of
// the behaviour the hand-written scanner must keep.
func referenceParse(data []byte, maxContent int) (protocol.ClientMessage, *protocol.BadMessage) {
	if maxContent <= 0 {
		maxContent = protocol.DefaultMaxContent
	}
	var f struct {
		Text    *bool           `json:"text"`
		Gallery *bool           `json:"gallery"`
		Content *string         `json:"content"`
		URL     *string         `json:"url"`
		CID     json.RawMessage `json:"cid"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return protocol.ClientMessage{}, &protocol.BadMessage{Reason: referenceDescribe(data, err)}
	}
	var m protocol.ClientMessage
	if len(f.CID) > 0 && string(f.CID) != "null" {
		var cid string
		if err := json.Unmarshal(f.CID, &cid); err != nil {
			return m, &protocol.BadMessage{Reason: "cid must be a string"}
		}
		if utf8.RuneCountInString(cid) > protocol.MaxCIDLen {
			return m, &protocol.BadMessage{Reason: fmt.Sprintf("cid is longer than %d characters", protocol.MaxCIDLen)}
		}
		m.CID, m.HasCID = cid, true
	}
	bad := func(format string, args ...any) (protocol.ClientMessage, *protocol.BadMessage) {
		return protocol.ClientMessage{}, &protocol.BadMessage{Reason: fmt.Sprintf(format, args...), CID: m.CID, HasCID: m.HasCID}
	}
	text := f.Text != nil && *f.Text
	gallery := f.Gallery != nil && *f.Gallery
	switch {
	case text && gallery:
		return bad("a message is either text or gallery, not both")
	case text:
		if f.Content == nil {
			return bad("text message without content")
		}
		c := strings.TrimSpace(*f.Content)
		n := utf8.RuneCountInString(c)
		if n == 0 {
			return bad("content is empty")
		}
		if n > maxContent {
			return bad("content is %d characters, the limit is %d", n, maxContent)
		}
		m.Kind, m.Content = protocol.KindText, c
	case gallery:
		if f.URL == nil || strings.TrimSpace(*f.URL) == "" {
			return bad("gallery message without url")
		}
		m.Kind, m.URL = protocol.KindGallery, strings.TrimSpace(*f.URL)
	default:
		return bad(`a message needs "text":true with content or "gallery":true with url`)
	}
	return m, nil
}

// referenceParseV2 is ParseClientMessageV2 written on encoding/json.
func referenceParseV2(data []byte, maxContent int) (protocol.ClientMessage, *protocol.BadMessage) {
	if maxContent <= 0 {
		maxContent = protocol.DefaultMaxContent
	}
	var f struct {
		Text     *bool           `json:"text"`
		Gallery  *bool           `json:"gallery"`
		Typing   *bool           `json:"typing"`
		Content  *string         `json:"content"`
		URL      *string         `json:"url"`
		Emoji    *string         `json:"emoji"`
		CID      json.RawMessage `json:"cid"`
		Recall   *uint64         `json:"recall"`
		React    *uint64         `json:"react"`
		Mentions []string        `json:"mentions"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return protocol.ClientMessage{}, &protocol.BadMessage{Reason: referenceDescribe(data, err)}
	}
	var m protocol.ClientMessage
	if len(f.CID) > 0 && string(f.CID) != "null" {
		var cid string
		if err := json.Unmarshal(f.CID, &cid); err != nil {
			return m, &protocol.BadMessage{Reason: "cid must be a string"}
		}
		if utf8.RuneCountInString(cid) > protocol.MaxCIDLen {
			return m, &protocol.BadMessage{Reason: fmt.Sprintf("cid is longer than %d characters", protocol.MaxCIDLen)}
		}
		m.CID, m.HasCID = cid, true
	}
	bad := func(format string, args ...any) (protocol.ClientMessage, *protocol.BadMessage) {
		return protocol.ClientMessage{}, &protocol.BadMessage{Reason: fmt.Sprintf(format, args...), CID: m.CID, HasCID: m.HasCID}
	}
	kinds := map[protocol.Kind]bool{
		protocol.KindText:    f.Text != nil && *f.Text,
		protocol.KindGallery: f.Gallery != nil && *f.Gallery,
		protocol.KindRecall:  f.Recall != nil,
		protocol.KindReact:   f.React != nil,
		protocol.KindTyping:  f.Typing != nil && *f.Typing,
	}
	var kind protocol.Kind
	n := 0
	for k, on := range kinds {
		if on {
			kind, n = k, n+1
		}
	}
	switch {
	case n == 0:
		return bad(`a frame needs "text":true with content, "gallery":true with url, "recall":<id>, "react":<id> with emoji, or "typing":true`)
	case n > 1:
		return bad("a frame is one of text, gallery, recall, react or typing, not several")
	}
	switch kind {
	case protocol.KindText:
		if f.Content == nil {
			return bad("text message without content")
		}
		c := strings.TrimSpace(*f.Content)
		n := utf8.RuneCountInString(c)
		if n == 0 {
			return bad("content is empty")
		}
		if n > maxContent {
			return bad("content is %d characters, the limit is %d", n, maxContent)
		}
		var uids []string
		for i, u := range f.Mentions {
			if i == protocol.MaxMentions {
				return bad("mentions: at most %d uids", protocol.MaxMentions)
			}
			if !uidPattern.MatchString(u) {
				return bad("mentions: each must be a uid (1-64 of A-Z a-z 0-9 _ -)")
			}
			if !slices.Contains(uids, u) {
				uids = append(uids, u)
			}
		}
		m.Kind, m.Content = protocol.KindText, c
		if len(uids) > 0 {
			m.Ext = &protocol.Ext{Mentions: strings.Join(uids, ",")}
		}
	case protocol.KindGallery:
		if f.URL == nil || strings.TrimSpace(*f.URL) == "" {
			return bad("gallery message without url")
		}
		m.Kind, m.URL = protocol.KindGallery, strings.TrimSpace(*f.URL)
	case protocol.KindRecall:
		if *f.Recall == 0 {
			return bad("recall needs the id of a message (1 or more)")
		}
		m.Kind, m.Ext = protocol.KindRecall, &protocol.Ext{Target: *f.Recall}
	case protocol.KindReact:
		if *f.React == 0 {
			return bad("react needs the id of a message (1 or more)")
		}
		if f.Emoji == nil || !protocol.ValidEmoji([]byte(*f.Emoji)) {
			return bad(`react needs "emoji": one emoji`)
		}
		m.Kind, m.Ext = protocol.KindReact, &protocol.Ext{Target: *f.React, Emoji: *f.Emoji}
	case protocol.KindTyping:
		m.Kind = protocol.KindTyping
	}
	return m, nil
}

var uidPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func referenceDescribe(data []byte, err error) string {
	if !json.Valid(data) {
		return "frame is not valid JSON"
	}
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) > 0 && t[0] == '{' {
		return "a field has the wrong type: " + err.Error()
	}
	return "frame is not a JSON object"
}

const wrongType = "a field has the wrong type"

// jsonMaxDepth is encoding/json's nesting limit (arrays and objects, the frame counting as one).
const jsonMaxDepth = 10000

// sameAsReference fails t when ParseClientMessage and referenceParse disagree on data. Reasons
// must be the same too, except the wrong-type text, which encoding/json words its own way.
func sameAsReference(t *testing.T, data []byte, max int) {
	t.Helper()
	sameAs(t, data, max, "v1", protocol.ParseClientMessage, referenceParse)
	sameAs(t, data, max, "v2", protocol.ParseClientMessageV2, referenceParseV2)
}

type parser func([]byte, int) (protocol.ClientMessage, *protocol.BadMessage)

func sameAs(t *testing.T, data []byte, max int, version string, parse, reference parser) {
	t.Helper()
	got, gotBad := parse(data, max)
	want, wantBad := reference(data, max)
	if len(data) > 200 {
		data = append(data[:200:200], "…"...)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s %q (max %d): got %+v %+v, encoding/json %+v %+v", version, data, max, got, got.Ext, want, want.Ext)
	}
	if (gotBad == nil) != (wantBad == nil) {
		t.Fatalf("%s %q (max %d): refusal %v, encoding/json %v", version, data, max, gotBad, wantBad)
	}
	if gotBad == nil {
		return
	}
	if gotBad.CID != wantBad.CID || gotBad.HasCID != wantBad.HasCID {
		t.Fatalf("%s %q (max %d): refusal keeps cid %q/%v, encoding/json %q/%v", version, data, max, gotBad.CID, gotBad.HasCID, wantBad.CID, wantBad.HasCID)
	}
	g, w := gotBad.Reason, wantBad.Reason
	if strings.HasPrefix(w, wrongType) && strings.HasPrefix(g, wrongType) {
		return
	}
	if g != w {
		t.Fatalf("%s %q (max %d): reason %q, encoding/json %q", version, data, max, g, w)
	}
}

// trickyFrames are the corners of encoding/json's rules the scanner has to copy.
func trickyFrames() []string {
	return []string{
		// keys
		`{"\u0074ext":true,"cont\u0065nt":"x"}`, `{"TEXT":true,"CONTENT":"x","CID":"c"}`, `{"tExT":true,"Content":"x"}`,
		`{"\u0054EXT":true,"content":"x"}`, `{"te\"xt":true,"content":"x"}`, `{"text ":true,"content":"x"}`,
		`{"ſ":1,"text":true,"content":"x"}`, `{"te\u212At":true}`, `{"K":1}`, "{\"te\xffxt\":true,\"content\":\"x\"}",
		`{"":true}`, `{"cid\u0000":1,"text":true,"content":"x"}`, `{"\ud800":1}`, `{"url\ud800":1}`,
		// duplicates and null
		`{"text":true,"content":"a","content":null}`, `{"text":true,"text":null,"content":"x"}`,
		`{"text":true,"content":"x","cid":"a","cid":null}`, `{"text":true,"content":"x","cid":1,"cid":"b"}`,
		`{"text":true,"content":"x","cid":"b","cid":[1]}`, `{"text":true,"content":"x","cid":1,"cid":null}`,
		`{"text":false,"text":true,"content":"x"}`, `{"gallery":true,"url":"a","url":" "}`,
		`{"text":"x","text":true,"content":"x"}`, `{"text":true,"content":"x","content":1}`,
		`{"text":true,"content":"x","cid":{},"text":"y"}`, `{"text":true,"content":"x","CID":"a","cid":"b"}`,
		// types
		`{"text":1}`, `{"text":[]}`, `{"text":{}}`, `{"text":"true"}`, `{"gallery":0,"cid":"c"}`,
		`{"content":true}`, `{"url":false}`, `{"url":[1,2]}`, `{"content":{"a":"b"}}`, `{"cid":true}`,
		`{"cid":-0}`, `{"cid":[]}`, `{"cid":{"a":[]}}`, `{"cid":""}`,
		// unknown values of every shape
		`{"text":true,"content":"x","a":{"b":[1,2,{"c":null}],"d":"e"},"f":[[],{}],"g":-1.5e+3}`,
		`{"a":[1,]}`, `{"a":[,1]}`, `{"a":{"b"}}`, `{"a":{"b":}}`, `{"a":{,}}`, `{"a":[1 2]}`, `{"a":{"b":1,}}`,
		`{"a":[}`, `{"a":{]}`, `{"a":[1}`, `{"a":{"b":1]}`, `{"a" : [ ] , "text" : true , "content" : "x" }`,
		// numbers
		`{"a":1e999,"text":true,"content":"x"}`, `{"a":-0}`, `{"a":01}`, `{"a":-}`, `{"a":1.}`, `{"a":.5}`,
		`{"a":1e}`, `{"a":1e+}`, `{"a":+1}`, `{"a":0x10}`, `{"a":1E-2}`, `{"a":-01}`, `{"a":00}`, `{"a":1.5.5}`,
		`1e999`, `-0`, `01`, `0`, `-`, `[1,2]`, `[]`, `[`, `]`, `{`, `}`,
		// literals
		`{"a":tru}`, `{"a":nul}`, `{"a":falsey}`, `{"a":True}`, `{"text":truex}`, `nul`, `nullx`, `null null`,
		`true`, `false`, ` null `, "\tnull\r\n", `{"text":null}`,
		// whitespace, BOM, trailing bytes
		"\xef\xbb\xbf{\"text\":true,\"content\":\"x\"}", "{\"text\":true,\"content\":\"x\"}\xef\xbb\xbf",
		"\v{}", "\f{}", "{}\x00", "{\u00a0}", " \r\n\t{ \r\n\t} \r\n\t", `{}{}`, `{} {}`, `{},`,
		// strings
		`{"text":true,"content":"\ud83d\udc3c"}`, `{"text":true,"content":"\ud83d"}`, `{"text":true,"content":"\udc3c\ud83d"}`,
		`{"text":true,"content":"\ud83d\ud83d\udc3c"}`, `{"text":true,"content":"\ud83dx"}`, `{"text":true,"content":"\ud83d\n"}`,
		`{"text":true,"content":"\ud83d\u0041"}`, `{"text":true,"content":"\ud83d\\udc3c"}`, `{"text":true,"content":"\u0000"}`,
		`{"text":true,"content":"\uDBFF\uDFFF"}`, `{"text":true,"content":"\uFFFD"}`, `{"text":true,"content":"\u00e9\u00E9"}`,
		`{"text":true,"content":"\x"}`, `{"text":true,"content":"\u12"}`, `{"text":true,"content":"\u12g4"}`, `{"text":true,"content":"\'"}`,
		`{"text":true,"content":"\/\b\f\n\r\t\"\\"}`, "{\"text\":true,\"content\":\"a\tb\"}", "{\"text\":true,\"content\":\"a\x7fb\"}",
		"{\"text\":true,\"content\":\"\xed\xa0\x80\"}", "{\"text\":true,\"content\":\"\xc0\xaf\"}", "{\"text\":true,\"content\":\"\xf4\x90\x80\x80\"}",
		"{\"text\":true,\"content\":\"\xe2\x80\"}", "{\"text\":true,\"content\":\"x\",\"cid\":\"\xff\"}",
		"{\"text\":true,\"content\":\"\xe3\x80\x80x\xe3\x80\x80\"}", `{"text":true,"content":"\u3000x\u2028"}`,
		`{"text":true,"content":"\u0085x\u00a0"}`, `{"gallery":true,"url":"\t/media/a\n"}`, `{"gallery":true,"url":"\u0020"}`,
		`{"text":true,"content":"x","cid":"` + strings.Repeat(`\u732b`, protocol.MaxCIDLen) + `"}`,
		`{"text":true,"content":"x","cid":"` + strings.Repeat(`\u732b`, protocol.MaxCIDLen+1) + `"}`,
		`{"text":true,"content":"x","cid":"` + strings.Repeat("\xff", protocol.MaxCIDLen) + `"}`,
		`{"text":true,"content":"` + strings.Repeat(`\u732b`, 5) + `"}`, `{"text":true,"content":"` + strings.Repeat("\xff", 5) + `"}`,
		`{"text":true,"content":"` + strings.Repeat("x\\n", 300) + `"}`,
		// version 2: recall, react, typing, mentions (version 1 skips these fields)
		`{"recall":7}`, `{"recall":7,"cid":"c"}`, `{"RECALL":7}`, `{"recall":0}`, `{"recall":-0}`, `{"recall":-1}`,
		`{"recall":1.5}`, `{"recall":1e2}`, `{"recall":1E2}`, `{"recall":18446744073709551615}`, `{"recall":18446744073709551616}`,
		`{"recall":99999999999999999999}`, `{"recall":"7"}`, `{"recall":true}`, `{"recall":[7]}`, `{"recall":{}}`,
		`{"recall":null}`, `{"recall":7,"recall":null}`, `{"recall":null,"recall":8}`, `{"recall":7,"text":true,"content":"x"}`,
		`{"recall":7,"react":7,"emoji":"👍"}`, `{"react":7,"emoji":"👍"}`, `{"react":7,"emoji":"👍","cid":"c"}`,
		`{"react":7}`, `{"react":7,"emoji":null}`, `{"react":7,"emoji":""}`, `{"react":7,"emoji":"a"}`, `{"react":7,"emoji":"👍👍"}`,
		`{"react":7,"emoji":"\ud83d\udc4d"}`, `{"react":7,"emoji":"\ud83d"}`, `{"react":7,"emoji":"❤️"}`, `{"react":7,"emoji":"👍🏽"}`,
		`{"react":7,"emoji":"👨‍👩‍👧‍👦"}`, `{"react":7,"emoji":"🇨🇳"}`, `{"react":7,"emoji":"🇨"}`, `{"react":7,"emoji":"1️⃣"}`,
		`{"react":7,"emoji":"1⃣"}`, `{"react":7,"emoji":"‍👍"}`, `{"react":7,"emoji":"👍‍"}`, `{"react":7,"emoji":"🏴󠁧󠁢󠁥󠁮󠁧󠁿"}`,
		`{"react":7,"emoji":"©"}`, `{"react":7,"emoji":1}`, `{"react":0,"emoji":"👍"}`, `{"react":7,"emoji":"👍","EMOJI":"x"}`,
		`{"typing":true}`, `{"typing":false}`, `{"typing":null}`, `{"typing":1}`, `{"typing":"true"}`, `{"Typing":true,"cid":"t"}`,
		`{"typing":true,"text":true,"content":"x"}`, `{"typing":true,"gallery":false}`,
		`{"text":true,"content":"x","mentions":["a1","b2"]}`, `{"text":true,"content":"x","mentions":[]}`, `{"text":true,"content":"x","mentions":null}`,
		`{"text":true,"content":"x","mentions":["a1","a1","b2","a1"]}`, `{"text":true,"content":"x","mentions":["a",null]}`,
		`{"text":true,"content":"x","mentions":[""]}`, `{"text":true,"content":"x","mentions":["a b"]}`, `{"text":true,"content":"x","mentions":["\u0061"]}`,
		`{"text":true,"content":"x","mentions":[1]}`, `{"text":true,"content":"x","mentions":[[]]}`, `{"text":true,"content":"x","mentions":[{}]}`,
		`{"text":true,"content":"x","mentions":"a"}`, `{"text":true,"content":"x","mentions":{}}`, `{"text":true,"content":"x","mentions":true}`,
		`{"text":true,"content":"x","mentions":["a"],"mentions":["b"]}`, `{"text":true,"content":"x","mentions":["a"],"mentions":null}`,
		`{"text":true,"content":"x","mentions":[1],"mentions":["b"]}`, `{"text":true,"content":"x","mentions":["a",]}`, `{"text":true,"content":"x","mentions":[,"a"]}`,
		`{"text":true,"content":"x","mentions":["a" "b"]}`, `{"text":true,"content":"x","mentions":[` + strings.Repeat(`"u",`, 20) + `"v"]}`,
		`{"text":true,"content":"x","mentions":[` + strings.Repeat(`"u",`, 19) + `"v"]}`, `{"text":true,"content":"x","mentions":["` + strings.Repeat("u", 65) + `"]}`,
		`{"text":true,"content":"x","mentions":["` + strings.Repeat("u", 64) + `"]}`, `{"gallery":true,"url":"/media/a","mentions":["a"]}`,
		`{"text":true,"content":"","mentions":[1]}`, `{"text":true,"content":"x","mentions":[` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `]}`,
		`{"recall":7,"mentions":["a"],"emoji":1}`, `{"text":true,"content":"x","mentions":[` + strings.Repeat(`"u",`, 21) + `"a b"]}`,
		`{"text":true,"content":"x","mentions":["a b",` + strings.Repeat(`"u",`, 21) + `"v"]}`,
		// depth (deeper frames: TestParseDepthMatchesEncodingJSON; they would stall the fuzzer)
		strings.Repeat("[", 300) + strings.Repeat("]", 300), strings.Repeat("[", 300) + strings.Repeat("]", 299),
		`{"text":true,"content":"x","a":` + strings.Repeat(`{"a":[`, 150) + strings.Repeat("]}", 150) + `}`,
		`{"a":` + strings.Repeat("[{}", 200) + strings.Repeat("]", 200) + `}`, `{"a":` + strings.Repeat("[", 70) + strings.Repeat("]", 69) + "}]",
	}
}

// TestParseDepthMatchesEncodingJSON: encoding/json allows 10 000 levels of arrays and objects,
// the frame counting as one.
func TestParseDepthMatchesEncodingJSON(t *testing.T) {
	in := func(n int, open, close string) string {
		return `{"text":true,"content":"x","x":` + strings.Repeat(open, n-1) + strings.Repeat(close, n-1) + `}`
	}
	for _, s := range []string{
		in(jsonMaxDepth, "[", "]"), in(jsonMaxDepth+1, "[", "]"),
		in(jsonMaxDepth, `{"a":`, "}"), in(jsonMaxDepth+1, `{"a":`, "}"),
		in(jsonMaxDepth/2, `[{"a":`, "}]"), in(jsonMaxDepth/2+1, `[{"a":`, "}]"),
		strings.Repeat("[", jsonMaxDepth) + strings.Repeat("]", jsonMaxDepth),
		strings.Repeat("[", jsonMaxDepth+1) + strings.Repeat("]", jsonMaxDepth+1),
		strings.Repeat("[", jsonMaxDepth+1), strings.Repeat(`{"a":`, jsonMaxDepth+1),
	} {
		for _, max := range fuzzMaxContent {
			sameAsReference(t, []byte(s), max)
		}
	}
}

// corpus reads the inputs of a fuzz target's committed corpus.
func corpus(t testing.TB, target string) [][]byte {
	files, err := filepath.Glob(filepath.Join("testdata", "fuzz", target, "*"))
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) != 2 || lines[0] != "go test fuzz v1" || !strings.HasPrefix(lines[1], "[]byte(") {
			t.Fatalf("%s: not a one-[]byte corpus file", name)
		}
		s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out = append(out, []byte(s))
	}
	return out
}

var fuzzMaxContent = []int{-1, 1, 5, protocol.DefaultMaxContent}

// FuzzParseMatchesEncodingJSON: for any input the scanner refuses what encoding/json refused and
// accepts exactly the same message.
func FuzzParseMatchesEncodingJSON(f *testing.F) {
	for _, b := range corpus(f, "FuzzParseClientMessage") {
		f.Add(b)
	}
	for _, s := range trickyFrames() {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, max := range fuzzMaxContent {
			sameAsReference(t, data, max)
		}
	})
}
