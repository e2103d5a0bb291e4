package protocol

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// Kind is what a chat message carries.
type Kind uint8

const (
	KindText Kind = iota + 1
	KindGallery
	// The frames of protocol version 2 (ParseClientMessageV2): events on messages and
	// the typing notice.
	KindRecall
	KindReact
	KindTyping
)

// MaxMentions is how many uids one message may mention.
const MaxMentions = 20

// ClientMessage is a validated client frame. Fields a client may not set are never read.
type ClientMessage struct {
	Kind    Kind
	HasCID  bool
	Content string // KindText: trimmed text
	URL     string // KindGallery: as sent; the caller resolves it
	CID     string // echoed to the sender only
	// Ext is what only frames of version 2 carry, nil when a frame has none of
	// it: a message of the original kinds costs no more than it did.
	Ext *Ext
}

// Ext is the part of a frame of version 2 beyond the original fields.
type Ext struct {
	Target   uint64 // KindRecall, KindReact: the message's id
	Emoji    string // KindReact
	Mentions string // KindText: the distinct uids mentioned, in order, joined by commas
}

// Target is the id a recall or reaction names, 0 for other frames.
func (m ClientMessage) Target() uint64 {
	if m.Ext == nil {
		return 0
	}
	return m.Ext.Target
}

// Emoji is a reaction's emoji, "" for other frames.
func (m ClientMessage) Emoji() string {
	if m.Ext == nil {
		return ""
	}
	return m.Ext.Emoji
}

// Mentions is the uids a text message mentions, joined by commas ("" for none).
func (m ClientMessage) Mentions() string {
	if m.Ext == nil {
		return ""
	}
	return m.Ext.Mentions
}

// MentionList is Mentions as a list.
func (m ClientMessage) MentionList() []string {
	if m.Mentions() == "" {
		return nil
	}
	return strings.Split(m.Mentions(), ",")
}

// BadMessage is a refused client frame; CID is kept when it could be read.
type BadMessage struct {
	Reason string
	CID    string
	HasCID bool
}

func (e *BadMessage) Error() string { return e.Reason }

// CIDRef is the cid to echo with the refusal, nil when there was none.
func (e *BadMessage) CIDRef() *string { return cidRef(e.CID, e.HasCID) }

// CIDRef is the cid to echo to the sender, nil when there was none.
func (m ClientMessage) CIDRef() *string { return cidRef(m.CID, m.HasCID) }

func cidRef(cid string, ok bool) *string {
	if !ok {
		return nil
	}
	return &cid
}

// ParseClientMessage validates one text frame of protocol version 1 (the original client's
// frames: text and gallery). maxContent is in characters (runes).
//
// The frame is read in one pass without reflection and behaves exactly as decoding it with
// encoding/json into
//
//	struct{ Text, Gallery *bool; Content, URL *string; CID json.RawMessage }
//
// would: the frame must be one valid JSON value (at most 10 000 levels deep); `null` is an
// empty object; keys match case-insensitively (after unescaping) and the last duplicate wins,
// null resetting the field; other fields of any type are skipped; strings are unescaped with
// bad UTF-8 and lone surrogates turned into U+FFFD. A known field of the wrong type refuses the
// frame, a cid that is not a string too; neither refusal keeps the cid.
// protocol/client_ref_test.go keeps the encoding/json version and a fuzz test compares them.
func ParseClientMessage(data []byte, maxContent int) (ClientMessage, *BadMessage) {
	return parse(data, maxContent, false)
}

// ParseClientMessageV2 validates one text frame of a connection that opted into protocol
// version 2 (`v=2`): besides text (now with optional "mentions") and gallery, a frame may be
// {"recall":<id>}, {"react":<id>,"emoji":".."} or {"typing":true}. It reads JSON as
// ParseClientMessage does, as encoding/json would decode it into
//
//	struct{ Text, Gallery, Typing *bool; Content, URL, Emoji *string; CID json.RawMessage;
//	        Recall, React *uint64; Mentions []string }
//
// and a frame is exactly one of the five kinds.
func ParseClientMessageV2(data []byte, maxContent int) (ClientMessage, *BadMessage) {
	return parse(data, maxContent, true)
}

func parse(data []byte, maxContent int, v2 bool) (ClientMessage, *BadMessage) {
	if maxContent <= 0 {
		maxContent = DefaultMaxContent
	}
	var f frameFields
	f.v2 = v2
	if reason := scanFrame(data, &f); reason != "" {
		return ClientMessage{}, &BadMessage{Reason: reason}
	}
	var m ClientMessage
	var cidBuf [64]byte
	var cid []byte
	switch f.cid.state {
	case valueNotString:
		return m, &BadMessage{Reason: "cid must be a string"}
	case valueString:
		cid = f.cid.value(data, cidBuf[:0])
		if runeCount(cid) > MaxCIDLen {
			return m, &BadMessage{Reason: fmt.Sprintf("cid is longer than %d characters", MaxCIDLen)}
		}
		m.HasCID = true
	}
	bad := func(reason string) (ClientMessage, *BadMessage) {
		b := &BadMessage{Reason: reason, HasCID: m.HasCID}
		if m.HasCID {
			b.CID = string(cid)
		}
		return ClientMessage{}, b
	}
	kind := Kind(0)
	if v2 {
		n := 0
		for k, on := range [...]bool{KindText: f.text, KindGallery: f.gallery, KindRecall: f.recall.state == valueNumber,
			KindReact: f.react.state == valueNumber, KindTyping: f.typing} {
			if on {
				kind = Kind(k)
				n++
			}
		}
		switch n {
		case 0:
			return bad(`a frame needs "text":true with content, "gallery":true with url, "recall":<id>, "react":<id> with emoji, or "typing":true`)
		case 1:
		default:
			return bad("a frame is one of text, gallery, recall, react or typing, not several")
		}
	} else {
		switch {
		case f.text && f.gallery:
			return bad("a message is either text or gallery, not both")
		case f.text:
			kind = KindText
		case f.gallery:
			kind = KindGallery
		default:
			return bad(`a message needs "text":true with content or "gallery":true with url`)
		}
	}
	switch kind {
	case KindText:
		if f.content.state != valueString {
			return bad("text message without content")
		}
		c, id, ext, reason := text(data, &f, cid, maxContent)
		if reason != "" {
			return bad(reason)
		}
		m.Kind, m.Ext = KindText, ext
		m.Content, m.CID = c, id
	case KindGallery:
		if f.url.state != valueString {
			return bad("gallery message without url")
		}
		u, id := stringAndCID(data, &f.url, true, cid)
		if u == "" {
			return bad("gallery message without url")
		}
		m.Kind = KindGallery
		m.URL, m.CID = u, id
	case KindRecall:
		if f.recall.v == 0 {
			return bad("recall needs the id of a message (1 or more)")
		}
		m.Kind, m.Ext, m.CID = KindRecall, &Ext{Target: f.recall.v}, string(cid)
	case KindReact:
		if f.react.v == 0 {
			return bad("react needs the id of a message (1 or more)")
		}
		e, id, ok := emojiAndCID(data, &f.emoji, cid)
		if !ok {
			return bad(`react needs "emoji": one emoji`)
		}
		m.Kind, m.Ext = KindReact, &Ext{Target: f.react.v, Emoji: e}
		m.CID = id
	case KindTyping:
		m.Kind, m.CID = KindTyping, string(cid)
	}
	return m, nil
}

// text reads the content (trimmed, counted in characters) and mentions of a text frame and
// copies them with the cid into one allocation. Its buffers live in this frame, not parse's:
// parse runs on a connection actor's freshly started goroutine, whose small stack would
// otherwise be grown and copied for every frame.
//
//go:noinline
func text(data []byte, f *frameFields, cid []byte, maxContent int) (c, id string, ext *Ext, reason string) {
	var buf [256]byte
	b := bytes.TrimSpace(f.content.value(data, buf[:0]))
	n := runeCount(b)
	if n == 0 {
		return "", "", nil, "content is empty"
	}
	if n > maxContent {
		return "", "", nil, fmt.Sprintf("content is %d characters, the limit is %d", n, maxContent)
	}
	if f.mentions.state == valueArray {
		c, id, men, reason := mentioned(data, &f.mentions, b, cid)
		if reason != "" {
			return "", "", nil, reason
		}
		if men != "" {
			return c, id, &Ext{Mentions: men}, ""
		}
	}
	c, id = twoStrings(b, cid)
	return c, id, nil, ""
}

// stringAndCID is the value of s (trimmed of spaces if trim) and the cid in one allocation;
// "" when the value is empty. Its buffer lives in this frame, not parse's (see text).
//
//go:noinline
func stringAndCID(data []byte, s *jsonString, trim bool, cid []byte) (v, id string) {
	var buf [256]byte
	b := s.value(data, buf[:0])
	if trim {
		b = bytes.TrimSpace(b)
	}
	if len(b) == 0 {
		return "", ""
	}
	return twoStrings(b, cid)
}

// emojiAndCID is the emoji of a reaction and the cid in one allocation, if it is one emoji.
//
//go:noinline
func emojiAndCID(data []byte, s *jsonString, cid []byte) (e, id string, ok bool) {
	var buf [64]byte
	var b []byte
	if s.state == valueString {
		b = s.value(data, buf[:0])
	}
	if !ValidEmoji(b) {
		return "", "", false
	}
	e, id = twoStrings(b, cid)
	return e, id, true
}

// mentioned reads the mentions of a text frame and copies content, cid and the uid list
// into one allocation (men is "" when the list is empty); its buffer lives in this frame.
//
//go:noinline
func mentioned(data []byte, a *jsonArray, content, cid []byte) (c, id, men, reason string) {
	var list [MaxMentions * (MaxUIDLen + 1)]byte
	l, reason := a.uids(data, list[:0])
	if reason != "" || len(l) == 0 {
		return "", "", "", reason
	}
	c, id, men = threeStrings(content, cid, l)
	return c, id, men, ""
}

// threeStrings is twoStrings for three.
func threeStrings(a, b, c []byte) (string, string, string) {
	var sb strings.Builder
	sb.Grow(len(a) + len(b) + len(c))
	sb.Write(a)
	sb.Write(b)
	sb.Write(c)
	s := sb.String()
	return s[:len(a)], s[len(a) : len(a)+len(b)], s[len(a)+len(b):]
}

// twoStrings copies a and b into one allocation (the cid is small and lives as long as the
// message it belongs to).
func twoStrings(a, b []byte) (string, string) {
	if len(b) == 0 {
		return string(a), ""
	}
	var sb strings.Builder
	sb.Grow(len(a) + len(b))
	sb.Write(a)
	sb.Write(b)
	s := sb.String()
	return s[:len(a)], s[len(a):]
}

// runeCount counts the characters of valid UTF-8: the bytes that start one. (utf8.RuneCount
// copies non-ASCII text longer than 32 bytes into a new string first.)
func runeCount(b []byte) int {
	n := len(b)
	for ; len(b) > 7; b = b[8:] {
		x := binary.LittleEndian.Uint64(b)
		n -= bits.OnesCount64(x &^ (x << 1) & highBits) // bytes 10xxxxxx
	}
	for _, c := range b {
		if c&0xC0 == 0x80 {
			n--
		}
	}
	return n
}

const (
	lowBits  = 0x0101010101010101
	highBits = 0x8080808080808080
)

// Reasons for frames that are not a JSON object.
const (
	reasonInvalid   = "frame is not valid JSON"
	reasonNotObject = "frame is not a JSON object"
)

// maxDepth is encoding/json's nesting limit: arrays and objects together, the frame itself
// counting as one level.
const maxDepth = 10000

// The fields of a frame, as scanned.
type frameFields struct {
	v2                    bool // the fields of version 2 are known; else they are other fields
	text, gallery, typing bool // true, not false, null or absent
	content, url, emoji   jsonString
	cid                   jsonString
	recall, react         jsonID
	mentions              jsonArray
	wrongType             string // the first known field of the wrong type, as a reason
}

const (
	valueAbsent    = iota // absent or null
	valueString           // body holds the string
	valueNotString        // cid only: any other JSON value
	valueNumber           // jsonID: v holds a whole number
	valueArray            // jsonArray: an array of strings and nulls
)

// jsonID is a message id: a JSON number that is a whole number of uint64's range.
type jsonID struct {
	state uint8
	v     uint64
}

// jsonArray is where an array of strings (and nulls) is in the frame.
type jsonArray struct {
	state uint8
	start int // its '['
}

// MaxUIDLen is the longest uid a mention may name.
const MaxUIDLen = 64

// uids reads the mentions array (the scanner checked it holds only strings and nulls) into
// list, comma-separated, without duplicates; or a reason to refuse it. encoding/json reads a
// null element of a []string as "", which is no uid.
func (a *jsonArray) uids(data []byte, list []byte) ([]byte, string) {
	n := 0
	for i := skipSpace(data, a.start+1); data[i] != ']'; {
		n++
		if n > MaxMentions {
			return nil, fmt.Sprintf("mentions: at most %d uids", MaxMentions)
		}
		var uid []byte
		if data[i] == '"' {
			var s jsonString
			s.start = i + 1
			i, s.escaped = scanString(data, i)
			s.end = i - 1
			var buf [MaxUIDLen]byte
			uid = s.value(data, buf[:0])
		} else {
			i += len("null")
		}
		if !validUID(uid) {
			return nil, "mentions: each must be a uid (1-64 of A-Z a-z 0-9 _ -)"
		}
		if !hasUID(list, uid) {
			if len(list) > 0 {
				list = append(list, ',')
			}
			list = append(list, uid...)
		}
		if i = skipSpace(data, i); data[i] == ',' {
			i = skipSpace(data, i+1)
		}
	}
	return list, ""
}

// validUID reports whether uid looks like a user id: 1-64 of [A-Za-z0-9_-].
func validUID(uid []byte) bool {
	if len(uid) == 0 || len(uid) > MaxUIDLen {
		return false
	}
	for _, c := range uid {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// hasUID reports whether the comma-separated list holds uid.
func hasUID(list, uid []byte) bool {
	for len(list) > 0 {
		var item []byte
		item, list, _ = bytes.Cut(list, []byte{','})
		if bytes.Equal(item, uid) {
			return true
		}
	}
	return false
}

// jsonString is where a string value is in the frame.
type jsonString struct {
	state      uint8
	escaped    bool // body has a backslash
	start, end int  // the body, between the quotes
}

// value is the unescaped string: the frame's own bytes when they need no change, or the
// string decoded into buf (grown when too small).
func (s *jsonString) value(data []byte, buf []byte) []byte {
	body := data[s.start:s.end]
	if !s.escaped && utf8.Valid(body) {
		return body
	}
	for r := 0; r < len(body); {
		var c rune
		c, r = nextRune(body, r)
		buf = utf8.AppendRune(buf, c)
	}
	return buf
}

// nextRune decodes the character at body[r] of a string the scanner accepted, the way
// encoding/json unquotes it: escapes and surrogate pairs decoded, a lone surrogate or a byte
// that is not UTF-8 becomes U+FFFD.
func nextRune(body []byte, r int) (rune, int) {
	c := body[r]
	if c >= utf8.RuneSelf {
		rr, size := utf8.DecodeRune(body[r:])
		return rr, r + size
	}
	if c != '\\' {
		return rune(c), r + 1
	}
	switch body[r+1] {
	case 'b':
		return '\b', r + 2
	case 'f':
		return '\f', r + 2
	case 'n':
		return '\n', r + 2
	case 'r':
		return '\r', r + 2
	case 't':
		return '\t', r + 2
	case 'u':
		rr := hex4(body[r+2 : r+6])
		r += 6
		if utf16.IsSurrogate(rr) {
			if r+6 <= len(body) && body[r] == '\\' && body[r+1] == 'u' {
				if dec := utf16.DecodeRune(rr, hex4(body[r+2:r+6])); dec != unicode.ReplacementChar {
					return dec, r + 6
				}
			}
			return unicode.ReplacementChar, r
		}
		return rr, r
	default: // " \ /
		return rune(body[r+1]), r + 2
	}
}

// hex4 decodes four hex digits the scanner checked.
func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		r <<= 4
		switch {
		case c <= '9':
			r |= rune(c - '0')
		case c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			r |= rune(c - 'a' + 10)
		}
	}
	return r
}

// Fields a client may set; those after fieldCID only in version 2.
const (
	fieldOther = iota
	fieldText
	fieldGallery
	fieldContent
	fieldURL
	fieldCID
	fieldTyping
	fieldEmoji
	fieldRecall
	fieldReact
	fieldMentions
	fieldLast = fieldMentions
)

var fieldNames = [...]string{fieldText: "text", fieldGallery: "gallery", fieldContent: "content", fieldURL: "url", fieldCID: "cid",
	fieldTyping: "typing", fieldEmoji: "emoji", fieldRecall: "recall", fieldReact: "react", fieldMentions: "mentions"}

// matchField names the field a key sets. Keys match as encoding/json matches them: the
// unescaped key equals the name under Unicode simple case folding (bytes.EqualFold).
func matchField(key []byte, escaped bool) int {
	var or byte
	for _, c := range key {
		or |= c
	}
	if !escaped && or&utf8.RuneSelf == 0 { // ASCII: the fast path
		switch len(key) {
		case 3:
			if asciiFold(key, "url") {
				return fieldURL
			}
			if asciiFold(key, "cid") {
				return fieldCID
			}
		case 4:
			if asciiFold(key, "text") {
				return fieldText
			}
		case 5:
			if asciiFold(key, "emoji") {
				return fieldEmoji
			}
			if asciiFold(key, "react") {
				return fieldReact
			}
		case 6:
			if asciiFold(key, "typing") {
				return fieldTyping
			}
			if asciiFold(key, "recall") {
				return fieldRecall
			}
		case 7:
			if asciiFold(key, "content") {
				return fieldContent
			}
			if asciiFold(key, "gallery") {
				return fieldGallery
			}
		case 8:
			if asciiFold(key, "mentions") {
				return fieldMentions
			}
		}
		return fieldOther
	}
	for f := fieldText; f <= fieldLast; f++ {
		if foldEqual(key, fieldNames[f]) {
			return f
		}
	}
	return fieldOther
}

// asciiFold reports whether the ASCII key is name (lower case) in any case.
func asciiFold(key []byte, name string) bool {
	for i, c := range key {
		if c|0x20 != name[i] {
			return false
		}
	}
	return true
}

// foldEqual reports whether the key, unescaped, equals the ASCII name under simple folding.
func foldEqual(key []byte, name string) bool {
	i := 0
	for r := 0; r < len(key); {
		var c rune
		c, r = nextRune(key, r)
		// 'ſ' (U+017F) folds to s, 'K' (U+212A) to k.
		if i == len(name) || foldRune(c) != foldRune(rune(name[i])) {
			return false
		}
		i++
	}
	return i == len(name)
}

// foldRune is the smallest rune of r's case folding orbit, as encoding/json folds names.
func foldRune(r rune) rune {
	for {
		r2 := unicode.SimpleFold(r)
		if r2 <= r {
			return r2
		}
		r = r2
	}
}

// invalid is the offset the scanners return for data that is not valid JSON; callers
// test for it exactly.
const invalid = -1

// scanFrame checks that data is one JSON value and reads the fields of a top-level object
// into f. It returns the reason for a refusal without cid, or "".
func scanFrame(data []byte, f *frameFields) string {
	i := skipSpace(data, 0)
	if i == len(data) {
		return reasonInvalid
	}
	switch data[i] {
	case '{':
		i = scanObject(data, i, f)
	case 'n':
		i = scanLiteral(data, i, "null") // like an empty object
	default:
		if i = skipValue(data, i, 0); i != invalid && skipSpace(data, i) == len(data) {
			return reasonNotObject
		}
		return reasonInvalid
	}
	if i == invalid || skipSpace(data, i) != len(data) {
		return reasonInvalid
	}
	return f.wrongType
}

// scanObject reads the top-level object at data[i] into f and returns the offset after it,
// or invalid when it is not valid JSON.
func scanObject(data []byte, i int, f *frameFields) int {
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return i + 1
	}
	for {
		if i >= len(data) || data[i] != '"' {
			return invalid
		}
		start := i + 1
		var escaped bool
		if i, escaped = scanString(data, i); i == invalid {
			return invalid
		}
		field := matchField(data[start:i-1], escaped)
		if field > fieldCID && !f.v2 {
			field = fieldOther
		}
		if i = skipSpace(data, i); i >= len(data) || data[i] != ':' {
			return invalid
		}
		if i = skipSpace(data, i+1); i >= len(data) {
			return invalid
		}
		switch c := data[i]; field {
		case fieldText, fieldGallery, fieldTyping:
			var v bool
			switch c {
			case 't':
				i, v = scanLiteral(data, i, "true"), true
			case 'f':
				i = scanLiteral(data, i, "false")
			case 'n':
				i = scanLiteral(data, i, "null")
			default:
				f.typeError(field, c)
				i = skipValue(data, i, 1)
			}
			switch field {
			case fieldText:
				f.text = v
			case fieldGallery:
				f.gallery = v
			default:
				f.typing = v
			}
		case fieldContent, fieldURL, fieldCID, fieldEmoji:
			s := &f.content
			switch field {
			case fieldURL:
				s = &f.url
			case fieldCID:
				s = &f.cid
			case fieldEmoji:
				s = &f.emoji
			}
			switch c {
			case '"':
				s.start = i + 1
				i, s.escaped = scanString(data, i)
				s.state, s.end = valueString, i-1
			case 'n':
				i = scanLiteral(data, i, "null")
				s.state = valueAbsent
			default:
				if field == fieldCID {
					s.state = valueNotString
				} else {
					f.typeError(field, c)
				}
				i = skipValue(data, i, 1)
			}
		case fieldRecall, fieldReact:
			id := &f.recall
			if field == fieldReact {
				id = &f.react
			}
			i = f.scanID(data, i, field, id)
		case fieldMentions:
			i = f.scanMentions(data, i)
		default:
			i = skipValue(data, i, 1)
		}
		if i == invalid {
			return invalid
		}
		if i = skipSpace(data, i); i >= len(data) {
			return invalid
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case '}':
			return i + 1
		default:
			return invalid
		}
	}
}

// scanID reads the value at data[i] of recall or react, as encoding/json decodes a *uint64:
// null resets it, a number must be a whole number in uint64's range, anything else is of the
// wrong type. It returns the offset after the value, or invalid.
func (f *frameFields) scanID(data []byte, i, field int, id *jsonID) int {
	switch c := data[i]; c {
	case 'n':
		id.state = valueAbsent
		return scanLiteral(data, i, "null")
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		j := scanNumber(data, i)
		if j == invalid {
			return invalid
		}
		if v, ok := parseUint(data[i:j]); ok {
			id.state, id.v = valueNumber, v
		} else {
			f.typeError(field, '.')
		}
		return j
	default:
		f.typeError(field, c)
		return skipValue(data, i, 1)
	}
}

// parseUint is strconv.ParseUint(b, 10, 64) for a JSON number token.
func parseUint(b []byte) (uint64, bool) {
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (math.MaxUint64-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}

// scanMentions reads the value at data[i] of mentions, as encoding/json decodes a []string:
// null resets it; an array's elements must be strings or null; anything else is of the wrong
// type. It returns the offset after the value, or invalid.
func (f *frameFields) scanMentions(data []byte, i int) int {
	switch c := data[i]; c {
	case 'n':
		f.mentions.state = valueAbsent
		return scanLiteral(data, i, "null")
	case '[':
	default:
		f.typeError(fieldMentions, c)
		return skipValue(data, i, 1)
	}
	start := i
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == ']' {
		f.mentions = jsonArray{state: valueArray, start: start}
		return i + 1
	}
	for {
		if i >= len(data) {
			return invalid
		}
		switch c := data[i]; c {
		case '"':
			i, _ = scanString(data, i)
		case 'n':
			i = scanLiteral(data, i, "null")
		default:
			f.typeError(fieldMentions, '[')
			i = skipValue(data, i, 2)
		}
		if i == invalid {
			return invalid
		}
		if i = skipSpace(data, i); i >= len(data) {
			return invalid
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case ']':
			f.mentions = jsonArray{state: valueArray, start: start}
			return i + 1
		default:
			return invalid
		}
	}
}

// typeError keeps the first field of the wrong type; c starts its value ('.' for a number
// that is no whole number of uint64's range).
func (f *frameFields) typeError(field int, c byte) {
	if f.wrongType != "" {
		return
	}
	got := 4 // a number
	switch c {
	case '"':
		got = 0
	case '{':
		got = 1
	case '[':
		got = 2
	case 't', 'f':
		got = 3
	case '.':
		got = 5
	}
	f.wrongType = wrongTypeReasons[field][got]
}

// wrongTypeReasons[field][what the value is], made once.
var wrongTypeReasons = func() (t [fieldLast + 1][6]string) {
	for field := fieldText; field <= fieldLast; field++ {
		want := "a string"
		switch field {
		case fieldCID:
			continue // its own reason
		case fieldText, fieldGallery, fieldTyping:
			want = "true or false"
		case fieldRecall, fieldReact:
			want = "a message id"
		case fieldMentions:
			want = "an array of uids"
		}
		for got, what := range [6]string{"a string", "an object", "an array", "a boolean", "a number", "a fraction, a negative or too large a number"} {
			t[field][got] = "a field has the wrong type: " + fieldNames[field] + " must be " + want + ", not " + what
		}
	}
	t[fieldMentions][2] = "a field has the wrong type: mentions must be an array of uids (strings)"
	return t
}()

func skipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\r', '\n':
			i++
		default:
			return i
		}
	}
	return i
}

// scanLiteral checks for lit at data[i] and returns the offset after it, or invalid.
func scanLiteral(data []byte, i int, lit string) int {
	if len(data)-i < len(lit) || string(data[i:i+len(lit)]) != lit {
		return invalid
	}
	return i + len(lit)
}

// stringSafe marks the bytes a string may hold as they are: not a quote, a backslash or a
// control character. Bytes from 0x80 on are taken as they are; bad UTF-8 is replaced later.
var stringSafe = func() (t [256]bool) {
	for c := 0x20; c < 0x100; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// scanString checks the string at data[i] (the opening quote) and returns the offset after
// its closing quote, or invalid, and whether it has escapes.
func scanString(data []byte, i int) (int, bool) {
	escaped := false
	for i++; ; {
		// Eight plain bytes at a time: none is a quote, a backslash or below 0x20.
		for ; len(data)-i > 7; i += 8 {
			x := binary.LittleEndian.Uint64(data[i:])
			q, bs := x^(lowBits*'"'), x^(lowBits*'\\')
			if ((q-lowBits)&^q|(bs-lowBits)&^bs|(x-lowBits*0x20)&^x)&highBits != 0 {
				break
			}
		}
		for i < len(data) && stringSafe[data[i]] {
			i++
		}
		if i == len(data) {
			return invalid, false
		}
		switch data[i] {
		case '"':
			return i + 1, escaped
		case '\\':
			escaped = true
			if i+1 == len(data) {
				return invalid, false
			}
			switch data[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				// Six bytes for the escape and one more for the closing quote at least.
				if len(data)-i < 7 || !isHex(data[i+2]) || !isHex(data[i+3]) || !isHex(data[i+4]) || !isHex(data[i+5]) {
					return invalid, false
				}
				i += 6
			default:
				return invalid, false
			}
		default: // a control character
			return invalid, false
		}
	}
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// scanNumber checks the number at data[i] (JSON's grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?)
// and returns the offset after it, or invalid.
func scanNumber(data []byte, i int) int {
	if data[i] == '-' {
		if i++; i == len(data) {
			return invalid
		}
	}
	switch c := data[i]; {
	case c == '0':
		i++
	case c >= '1' && c <= '9':
		i = skipDigits(data, i+1)
	default:
		return invalid
	}
	if i < len(data) && data[i] == '.' {
		j := skipDigits(data, i+1)
		if j == i+1 {
			return invalid
		}
		i = j
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		j := skipDigits(data, i)
		if j == i {
			return invalid
		}
		i = j
	}
	return i
}

func skipDigits(data []byte, i int) int {
	for i < len(data) && data[i] >= '0' && data[i] <= '9' {
		i++
	}
	return i
}

// skipValue checks the JSON value at data[i], inside depth open arrays and objects, and
// returns the offset after it, or invalid.
func skipValue(data []byte, i int, depth int) int {
	switch data[i] {
	case '{', '[':
		return skipNested(data, i, depth)
	case '"':
		i, _ = scanString(data, i)
		return i
	case 't':
		return scanLiteral(data, i, "true")
	case 'f':
		return scanLiteral(data, i, "false")
	case 'n':
		return scanLiteral(data, i, "null")
	default:
		return scanNumber(data, i)
	}
}

// skipNested checks the array or object at data[i] without recursion: one bit per open
// level says whether it is an object.
func skipNested(data []byte, i int, depth int) int {
	var small [4]uint64
	objects := small[:0] // grown as levels open: the first 256 levels in small
	n := 0               // levels opened here
	for {
		// A value starts at data[i].
		if i >= len(data) {
			return invalid
		}
		switch c := data[i]; c {
		case '{', '[':
			if depth+n >= maxDepth {
				return invalid
			}
			if n/64 == len(objects) {
				objects = append(objects, 0)
			}
			bit := uint64(1) << (n % 64)
			objects[n/64] &^= bit
			if c == '{' {
				objects[n/64] |= bit
			}
			n++
			if i = skipSpace(data, i+1); i < len(data) && data[i] == c+2 { // ']' or '}'
				n--
				i++
				break
			}
			if c == '{' {
				if i = skipKey(data, i); i == invalid {
					return invalid
				}
			}
			continue
		case '"':
			i, _ = scanString(data, i)
		case 't':
			i = scanLiteral(data, i, "true")
		case 'f':
			i = scanLiteral(data, i, "false")
		case 'n':
			i = scanLiteral(data, i, "null")
		default:
			i = scanNumber(data, i)
		}
		// After a value: close levels until a comma.
		for {
			if i == invalid {
				return invalid
			}
			if n == 0 {
				return i
			}
			if i = skipSpace(data, i); i >= len(data) {
				return invalid
			}
			object := objects[(n-1)/64]&(1<<((n-1)%64)) != 0
			c := data[i]
			if c == ',' {
				i = skipSpace(data, i+1)
				if object {
					i = skipKey(data, i)
				}
				break
			}
			if object && c == '}' || !object && c == ']' {
				n--
				i++
				continue
			}
			return invalid
		}
		if i == invalid {
			return invalid
		}
	}
}

// skipKey checks `"key" :` at data[i] and returns the offset of the value after it, or invalid.
func skipKey(data []byte, i int) int {
	if i >= len(data) || data[i] != '"' {
		return invalid
	}
	if i, _ = scanString(data, i); i == invalid {
		return invalid
	}
	if i = skipSpace(data, i); i >= len(data) || data[i] != ':' {
		return invalid
	}
	return skipSpace(data, i+1)
}
