package protocol

import (
	"bytes"
	"strconv"
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
	i := bytes.Index(stored, []byte(key))
	if i < 0 {
		return ""
	}
	rest := stored[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return string(rest[:j])
}

// StoredTime reads the unix-ms time of a stored message object written by AppendRecord.
func StoredTime(stored []byte) int64 {
	const key = `,"time":`
	i := bytes.Index(stored, []byte(key))
	if i < 0 {
		return 0
	}
	var t int64
	for _, c := range stored[i+len(key):] {
		if c < '0' || c > '9' {
			break
		}
		t = t*10 + int64(c-'0')
	}
	return t
}
