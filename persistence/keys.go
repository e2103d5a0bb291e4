package persistence

import (
	"encoding/binary"
	"math"
	"time"
)

// Key layout (one byte-ordered keyspace, prefix per kind):
//
//	s/<session id>              → Session JSON, Badger TTL = expiry
//	u/<uid>                     → User JSON
//	o/<openId>                  → uid
//	m/<room>/<id, BE uint64>    → message JSON (byte order = id order)
//	r/<room>                    → last id, BE uint64 (written with the batch)
//	media/<id>                  → Media JSON
//	q/<uid>/<at, BE unix ns>    → bytes uploaded, BE int64 (byte order = time order)
//	t/<ticket id>               → Ticket JSON, Badger TTL = expiry
//	c/<room>/<id, BE uint64>    → a message's reaction counts, JSON object
//	x/<room>/<id, BE uint64><uid> → uid's own reactions on the message, JSON array
//	j/<uid>/<room>              → uid's read position in room, BE uint64
const (
	prefixSession = "s/"
	prefixUser    = "u/"
	prefixOpenID  = "o/"
	prefixMessage = "m/"
	prefixRoom    = "r/"
	prefixMedia   = "media/"
	prefixUpload  = "q/"
	prefixTicket  = "t/"
	prefixCounts  = "c/"
	prefixMine    = "x/"
	prefixRead    = "j/"
)

func sessionKey(id string) []byte { return []byte(prefixSession + id) }
func userKey(uid string) []byte   { return []byte(prefixUser + uid) }
func openIDKey(o string) []byte   { return []byte(prefixOpenID + o) }
func roomKey(room string) []byte  { return []byte(prefixRoom + room) }
func mediaKey(id string) []byte   { return []byte(prefixMedia + id) }
func ticketKey(id string) []byte  { return []byte(prefixTicket + id) }

// messagePrefix ends in '/' so room "a" never matches room "ab".
func messagePrefix(room string) []byte { return []byte(prefixMessage + room + "/") }

func messageKey(room string, id uint64) []byte {
	p := messagePrefix(room)
	return binary.BigEndian.AppendUint64(p, id)
}

// uploadPrefix ends in '/'; a uid holding '/' cannot reach another's records,
// because a record key is exactly the prefix and 8 bytes.
func uploadPrefix(uid string) []byte { return []byte(prefixUpload + uid + "/") }

// uploadKey orders records by time; the sign bit is flipped so that times
// before 1970 sort first too.
func uploadKey(uid string, at time.Time) []byte {
	return binary.BigEndian.AppendUint64(uploadPrefix(uid), uint64(unixNano(at))^1<<63)
}

func uploadTime(key []byte) time.Time {
	return time.Unix(0, int64(binary.BigEndian.Uint64(key[len(key)-8:])^1<<63)).UTC()
}

var (
	minNano = time.Unix(0, math.MinInt64)
	maxNano = time.Unix(0, math.MaxInt64)
)

// unixNano is t.UnixNano clamped to what an int64 holds (years 1678 to 2262),
// so the zero Time sorts first instead of wrapping around.
func unixNano(t time.Time) int64 {
	switch {
	case t.Before(minNano):
		return math.MinInt64
	case t.After(maxNano):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// countsPrefix and minePrefix end in '/' like messagePrefix; a mine key is the
// prefix, the message id and the uid, so one message's keys share a prefix.
func countsPrefix(room string) []byte { return []byte(prefixCounts + room + "/") }
func minePrefix(room string) []byte   { return []byte(prefixMine + room + "/") }

func countsKey(room string, id uint64) []byte {
	return binary.BigEndian.AppendUint64(countsPrefix(room), id)
}

func mineTargetPrefix(room string, id uint64) []byte {
	return binary.BigEndian.AppendUint64(minePrefix(room), id)
}

func mineKey(room string, id uint64, uid string) []byte {
	return append(mineTargetPrefix(room, id), uid...)
}

// readPrefix ends in '/': uids never hold one.
func readPrefix(uid string) []byte    { return []byte(prefixRead + uid + "/") }
func readKey(uid, room string) []byte { return append(readPrefix(uid), room...) }

func idOf(key []byte) uint64 { return binary.BigEndian.Uint64(key[len(key)-8:]) }
