package protocol

import (
	"bytes"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Record is one accepted chat message as the room stores and broadcasts it.
type Record struct {
	ID        uint64
	Number    int   // online count when it was sent
	Time      int64 // unix ms
	UID       string
	NickName  string
	AvatarURL string
	Kind      Kind
	Content   string
	URL       string
	Mentions  string // text only: uids joined by commas (ClientMessage.Mentions()); "" for none
}

// AppendRecord appends the stored JSON object of r: {"id":..,...} without type.
func AppendRecord(b []byte, r *Record) []byte {
	b = append(b, `{"id":`...)
	b = strconv.AppendUint(b, r.ID, 10)
	b = append(b, `,"number":`...)
	b = strconv.AppendInt(b, int64(r.Number), 10)
	b = append(b, `,"time":`...)
	b = strconv.AppendInt(b, r.Time, 10)
	b = append(b, `,"uid":`...)
	b = AppendString(b, r.UID)
	b = append(b, `,"nickName":`...)
	b = AppendString(b, r.NickName)
	b = append(b, `,"avatarUrl":`...)
	b = AppendString(b, r.AvatarURL)
	if r.Kind == KindGallery {
		b = append(b, `,"gallery":true,"url":`...)
		b = AppendString(b, r.URL)
	} else {
		b = append(b, `,"text":true,"content":`...)
		b = AppendString(b, r.Content)
		if r.Mentions != "" { // last: a reader of version 1 gets the message without it
			b = append(b, mentionsKey...)
			for i, uid := range strings.Split(r.Mentions, ",") {
				if i > 0 {
					b = append(b, ',')
				}
				b = AppendString(b, uid)
			}
			b = append(b, ']')
		}
	}
	return append(b, '}')
}

// The shapes of stored objects. A chat message is {"id":..} (AppendRecord), its mentions, when
// it has any, last; a recalled message is the same object cut before its text or image and
// ending in recalledTail; an event is stored as its frame, {"type":..}.
const (
	mentionsKey  = `,"mentions":[`
	recalledTail = `,"recalled":true}`
)

// StoredEvent reports whether a stored object is an event (recall, reaction), not a message.
func StoredEvent(stored []byte) bool { return len(stored) > 2 && stored[2] == 't' }

// StoredRecalled reports whether a stored message was recalled.
func StoredRecalled(stored []byte) bool { return bytes.HasSuffix(stored, []byte(recalledTail)) }

// mentionsAt is where a stored message's mentions begin, or -1 when it has none.
func mentionsAt(stored []byte) int {
	if !bytes.HasSuffix(stored, []byte("]}")) {
		return -1
	}
	return bytes.LastIndex(stored, []byte(mentionsKey))
}

// StoredMentions reports whether a stored message mentions uid.
func StoredMentions(stored []byte, uid string) bool {
	i := mentionsAt(stored)
	if i < 0 || uid == "" {
		return false
	}
	list := stored[i+len(mentionsKey) : len(stored)-2]
	var q [MaxUIDLen + 2]byte
	return bytes.Contains(list, append(append(append(q[:0], '"'), uid...), '"'))
}

// RecallStub is the stored object a recall leaves of a message: who sent it and when,
// "recalled":true, and nothing of what it said. ok is false for objects that are not a
// message (events, or recalled already).
func RecallStub(stored []byte) ([]byte, bool) {
	if StoredEvent(stored) || StoredRecalled(stored) {
		return nil, false
	}
	i := bytes.Index(stored, []byte(`,"text":true,"content":`))
	if i < 0 {
		if i = bytes.Index(stored, []byte(`,"gallery":true,"url":`)); i < 0 {
			return nil, false
		}
	}
	b := make([]byte, 0, i+len(recalledTail))
	b = append(b, stored[:i]...)
	return append(b, recalledTail...), true
}

// Event is a recall or a reaction as the room stores and broadcasts it.
type Event struct {
	ID       uint64
	Time     int64 // unix ms
	Target   uint64
	UID      string
	NickName string
	Emoji    string // a reaction's; "" for a recall
	On       bool   // a reaction: the emoji is now on (else taken back)
}

// AppendEvent appends the stored object of e, which is also its frame:
// {"type":"recall","id":..,"time":..,"target":..,"uid":..,"nickName":..} or
// {"type":"reaction",..,"target":..,"emoji":..,"on":true|false,"uid":..,"nickName":..}.
func AppendEvent(b []byte, e *Event) []byte {
	if e.Emoji == "" {
		b = append(b, `{"type":"recall","id":`...)
	} else {
		b = append(b, `{"type":"reaction","id":`...)
	}
	b = strconv.AppendUint(b, e.ID, 10)
	b = append(b, `,"time":`...)
	b = strconv.AppendInt(b, e.Time, 10)
	b = append(b, `,"target":`...)
	b = strconv.AppendUint(b, e.Target, 10)
	if e.Emoji != "" {
		b = append(b, `,"emoji":`...)
		b = AppendString(b, e.Emoji)
		b = append(b, `,"on":`...)
		b = strconv.AppendBool(b, e.On)
	}
	b = append(b, `,"uid":`...)
	b = AppendString(b, e.UID)
	b = append(b, `,"nickName":`...)
	b = AppendString(b, e.NickName)
	return append(b, '}')
}

// StoredRecallTarget is the id a stored recall event recalls, 0 for any other object.
func StoredRecallTarget(stored []byte) uint64 {
	if !bytes.HasPrefix(stored, []byte(`{"type":"recall",`)) {
		return 0
	}
	return storedNumber(stored, `,"target":`)
}

// Typing is the ephemeral notice {"type":"typing","uid":..,"nickName":..}.
func Typing(uid, nickName string) []byte {
	b := append([]byte(`{"type":"typing","uid":`), AppendString(nil, uid)...)
	b = append(b, `,"nickName":`...)
	b = AppendString(b, nickName)
	return append(b, '}')
}

// AppendFrameOf appends the payload a reader gets for a stored object: a message as
// AppendChat builds it (for a reader of version 1 without its mentions), an event as it is
// stored (only readers of version 2 get events). cid, when given, goes last.
func AppendFrameOf(b, stored []byte, own bool, cid *string, base string, v2 bool) []byte {
	if StoredEvent(stored) {
		if cid == nil {
			return append(b, stored...)
		}
		b = append(b, stored[:len(stored)-1]...)
		b = append(b, `,"cid":`...)
		b = AppendString(b, *cid)
		return append(b, '}')
	}
	if !v2 {
		if i := mentionsAt(stored); i >= 0 {
			return appendChatBody(b, stored[1:i], own, cid, base)
		}
	}
	return AppendChat(b, stored, own, cid, base)
}

// AppendHistoryItem appends a stored message as /history lists it: as AppendFrameOf
// without cid and, for version 2, with its reactions (counts, a JSON object, as
// "reactions", and the reader's own, a JSON array, as "myReactions") when it has any.
func AppendHistoryItem(b, stored []byte, own bool, base string, v2 bool, counts, mine []byte) []byte {
	b = AppendFrameOf(b, stored, own, nil, base, v2)
	if !v2 || len(counts) == 0 {
		return b
	}
	b = append(b[:len(b)-1], `,"reactions":`...)
	b = append(b, counts...)
	if len(mine) > 0 {
		b = append(b, `,"myReactions":`...)
		b = append(b, mine...)
	}
	return append(b, '}')
}

// appendChatBody is AppendChat of an object given without its braces.
func appendChatBody(b, body []byte, own bool, cid *string, base string) []byte {
	if own {
		b = append(b, userPrefix...)
	} else {
		b = append(b, remotePrefix...)
	}
	b = appendBased(b, body, base)
	if cid != nil {
		b = append(b, `,"cid":`...)
		b = AppendString(b, *cid)
	}
	return append(b, '}')
}

const (
	userPrefix   = `{"type":"user",`
	remotePrefix = `{"type":"remote",`
)

// AppendChat appends a chat payload built from a stored object: the object with
// "type" first and, when cid is given, "cid" last. own selects "user" over
// "remote". URLs stored as paths of this server ("/media/…") are made absolute
// with base, the recipient's view of this server.
func AppendChat(b, stored []byte, own bool, cid *string, base string) []byte {
	if own {
		b = append(b, userPrefix...)
	} else {
		b = append(b, remotePrefix...)
	}
	body := stored[1:] // drop the stored object's '{'
	if cid != nil {
		body = body[:len(body)-1]
	}
	b = appendBased(b, body, base)
	if cid == nil {
		return b
	}
	b = append(b, `,"cid":`...)
	b = AppendString(b, *cid)
	return append(b, '}')
}

// urlKeys are the stored fields that may hold a path of this server. Inside
// string values quotes are escaped, so these byte sequences only match keys.
var urlKeys = [][]byte{[]byte(`"avatarUrl":"/`), []byte(`"url":"/`)}

// appendBased appends body, putting base in front of each stored path.
func appendBased(b, body []byte, base string) []byte {
	for _, key := range urlKeys {
		i := bytes.Index(body, key)
		if i < 0 {
			continue
		}
		at := i + len(key) - 1 // the path's leading '/'
		if at+1 < len(body) && body[at+1] == '/' {
			continue // protocol-relative: not ours
		}
		b = append(b, body[:at]...)
		b = append(b, base...)
		body = body[at:]
	}
	return append(b, body...)
}

// System is the first frame of every connection.
func System(num int) []byte {
	b := append([]byte(`{"type":"system","num":`), strconv.Itoa(num)...)
	return append(b, '}')
}

// Presence is the opt-in join/leave notice.
func Presence(num int, event, uid, nickName string) []byte {
	b := append([]byte(`{"type":"presence","num":`), strconv.Itoa(num)...)
	b = append(b, `,"event":`...)
	b = AppendString(b, event)
	b = append(b, `,"uid":`...)
	b = AppendString(b, uid)
	b = append(b, `,"nickName":`...)
	b = AppendString(b, nickName)
	return append(b, '}')
}

// ErrorFrame is an in-band error for the sender: {"type":"error","error":..,"message":..[,"cid":..]}.
func ErrorFrame(code, message string, cid *string) []byte {
	b := append([]byte(`{"type":"error","error":`), strconv.Quote(code)...)
	b = append(b, `,"message":`...)
	b = AppendString(b, message)
	if cid != nil {
		b = append(b, `,"cid":`...)
		b = AppendString(b, *cid)
	}
	return append(b, '}')
}

// SessionError is the wafer-style error frame sent before closing an unauthenticated socket.
func SessionError(code, message string) []byte {
	b := append([]byte(`{"`+Magic+`":1,"error":`), strconv.Quote(code)...)
	b = append(b, `,"message":`...)
	b = AppendString(b, message)
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string, escaping what JSON requires plus
// <, >, & and U+2028/2029 so frames are safe to embed in HTML and JavaScript.
func AppendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// StoredUID reads the uid of a stored message object written by AppendRecord.
func StoredUID(stored []byte) string {
	const key = `,"uid":"`
	_, rest, ok := bytes.Cut(stored, []byte(key))
	if !ok {
		return ""
	}
	uid, _, ok := bytes.Cut(rest, []byte{'"'})
	if !ok {
		return ""
	}
	return string(uid)
}

// StoredTime reads the unix-ms time of a stored object written by AppendRecord or AppendEvent.
func StoredTime(stored []byte) int64 { return int64(storedNumber(stored, `,"time":`)) }

// storedNumber reads the number after the first key (with its leading comma and colon).
func storedNumber(stored []byte, key string) uint64 {
	i := bytes.Index(stored, []byte(key))
	if i < 0 {
		return 0
	}
	var t uint64
	for _, c := range stored[i+len(key):] {
		if c < '0' || c > '9' {
			break
		}
		t = t*10 + uint64(c-'0')
	}
	return t
}
