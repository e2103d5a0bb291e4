package persistence

import "encoding/binary"

// Key layout (one byte-ordered keyspace, prefix per kind):
//
//	s/<session id>              → Session JSON, Badger TTL = expiry
//	u/<uid>                     → User JSON
//	o/<openId>                  → uid
//	m/<room>/<id, BE uint64>    → message JSON (byte order = id order)
//	r/<room>                    → last id, BE uint64 (written with the batch)
//	media/<id>                  → Media JSON
const (
	prefixSession = "s/"
	prefixUser    = "u/"
	prefixOpenID  = "o/"
	prefixMessage = "m/"
	prefixRoom    = "r/"
	prefixMedia   = "media/"
)

func sessionKey(id string) []byte { return []byte(prefixSession + id) }
func userKey(uid string) []byte   { return []byte(prefixUser + uid) }
func openIDKey(o string) []byte   { return []byte(prefixOpenID + o) }
func roomKey(room string) []byte  { return []byte(prefixRoom + room) }
func mediaKey(id string) []byte   { return []byte(prefixMedia + id) }

// messagePrefix ends in '/' so room "a" never matches room "ab".
func messagePrefix(room string) []byte { return []byte(prefixMessage + room + "/") }

func messageKey(room string, id uint64) []byte {
	p := messagePrefix(room)
	return binary.BigEndian.AppendUint64(p, id)
}

func idOf(key []byte) uint64 { return binary.BigEndian.Uint64(key[len(key)-8:]) }
