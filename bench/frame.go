package bench

import (
	"bytes"
	"strconv"
)

// Kind is the type of a server frame as far as the load generator cares.
type Kind uint8

// Frame kinds.
const (
	KindOther  Kind = iota // valid but not one of the below (e.g. presence)
	KindSystem             // {"type":"system","num":N}
	KindUser               // a message, on a connection of its sender
	KindRemote             // a message, on everyone else's connections
	KindError              // {"type":"error",...} or {MAGIC:1,"error":...}
	KindBad                // not a JSON object
)

func (k Kind) String() string {
	return [...]string{"other", "system", "user", "remote", "error", "bad"}[k]
}

// Frame is what ParseFrame reads out of a server frame. Stamp fields are
// set only when the content starts with a Stamp.
type Frame struct {
	Kind   Kind
	ID     uint64 // "id" of a message
	Num    int64  // "num" of a system frame
	Sent   int64  // send time, Unix ns
	Sender uint64 // sending connection's index in its generator
	Seq    uint64 // sender's sequence number, from 1
	Stamp  bool
}

var (
	keyType    = []byte(`"type":"`)
	keyID      = []byte(`"id":`)
	keyNum     = []byte(`"num":`)
	keyContent = []byte(`"content":"`)
	keyError   = []byte(`"error":`)
)

// ParseFrame reads the fields the generator needs from a frame's bytes by
// hand: it never allocates, so the receive path stays free of garbage.
func ParseFrame(b []byte) Frame {
	var f Frame
	if len(b) < 2 || b[0] != '{' || b[len(b)-1] != '}' {
		f.Kind = KindBad
		return f
	}
	ti := -1
	if bytes.HasPrefix(b[1:], keyType) { // the usual layout: "type" first
		ti = 1
	} else {
		ti = bytes.Index(b, keyType)
	}
	if i := ti; i >= 0 && i+len(keyType) < len(b) {
		switch b[i+len(keyType)] {
		case 's':
			f.Kind = KindSystem
		case 'u':
			f.Kind = KindUser
		case 'r':
			f.Kind = KindRemote
		case 'e':
			f.Kind = KindError
		}
	} else if bytes.Contains(b, keyError) {
		f.Kind = KindError
	}
	switch f.Kind {
	case KindSystem:
		if i := bytes.Index(b, keyNum); i >= 0 {
			n, _ := parseUint(b[i+len(keyNum):])
			f.Num = int64(n)
		}
	case KindUser, KindRemote:
		i := bytes.Index(b[ti:], keyID) // "id" usually follows "type"
		if i >= 0 {
			i += ti
		} else {
			i = bytes.Index(b, keyID)
		}
		if i < 0 {
			f.Kind = KindBad
			return f
		}
		id, ok := parseUint(b[i+len(keyID):])
		if !ok {
			f.Kind = KindBad
			return f
		}
		f.ID = id
		if j := bytes.LastIndex(b, keyContent); j >= 0 { // content comes last
			f.Sent, f.Sender, f.Seq, f.Stamp = parseStamp(b[j+len(keyContent):])
		}
	}
	return f
}

// parseUint reads leading ASCII digits.
func parseUint(b []byte) (uint64, bool) {
	var n uint64
	i := 0
	for ; i < len(b) && i < 20 && b[i] >= '0' && b[i] <= '9'; i++ {
		n = n*10 + uint64(b[i]-'0')
	}
	return n, i > 0
}

// A stamp starts the content of every generated message:
// "<send time, Unix ns>.<sender>.<seq>." then padding up to the size.
func parseStamp(b []byte) (sent int64, sender, seq uint64, ok bool) {
	var vals [3]uint64
	for k := range vals {
		v, good := parseUint(b)
		if !good {
			return 0, 0, 0, false
		}
		i := digits(b)
		if i >= len(b) || b[i] != '.' {
			return 0, 0, 0, false
		}
		vals[k] = v
		b = b[i+1:]
	}
	return int64(vals[0]), vals[1], vals[2], true
}

func digits(b []byte) int {
	i := 0
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

// AppendMessage appends a client text message of about size bytes of
// content: {"text":true,"content":"<stamp>xxxx…"}.
func AppendMessage(dst []byte, sent int64, sender, seq uint64, size int) []byte {
	dst = append(dst, `{"text":true,"content":"`...)
	start := len(dst)
	dst = strconv.AppendInt(dst, sent, 10)
	dst = append(dst, '.')
	dst = strconv.AppendUint(dst, sender, 10)
	dst = append(dst, '.')
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, '.')
	for len(dst)-start < size {
		dst = append(dst, 'x')
	}
	return append(dst, `"}`...)
}

// seqCheck follows the ids one connection receives in one room. It is used
// by that connection's read goroutine only.
type seqCheck struct {
	last uint64
	recv uint64 // deliveries in order (gaps allowed)
	gaps uint64 // ids skipped forward
	dups uint64 // the same id as the one before
	ooo  uint64 // an id lower than the one before
}

// Verdicts of seqCheck.observe.
const (
	vInOrder = iota // the next id, or the first one seen
	vGap            // a later id: the ones between are missing
	vDup            // the id just seen again
	vOld            // an id below the last one
)

// observe records one id.
func (c *seqCheck) observe(id uint64) int {
	v := vInOrder
	switch {
	case c.recv == 0 || id == c.last+1:
	case id > c.last+1:
		c.gaps += id - c.last - 1
		v = vGap
	case id == c.last:
		c.dups++
		return vDup
	default:
		c.ooo++
		return vOld
	}
	c.last = id
	c.recv++
	return v
}
