// Package protocol holds the wire contract: client frame parsing, server frame
// encoding, error codes and close codes. It knows nothing about sockets or actors.
package protocol

// Magic is the wafer session marker the original client SDK looks for in login answers.
const Magic = "F2C224D4-2BCE-4C64-AF9F-A6D872000D1A"

// Error codes sent in `error` fields.
const (
	ErrInvalidSession = "ERR_INVALID_SESSION"
	ErrLoginFailed    = "ERR_LOGIN_FAILED"
	ErrBadRoom        = "ERR_BAD_ROOM"
	ErrBadMessage     = "ERR_BAD_MESSAGE"
	ErrRateLimited    = "ERR_RATE_LIMITED"
	ErrUnavailable    = "ERR_UNAVAILABLE" // the store refused a write; nothing was delivered
	ErrTooManyConns   = "ERR_TOO_MANY_CONNECTIONS"
	ErrQuota          = "ERR_QUOTA"
)

// WebSocket close codes the server uses, side by side.
const (
	CloseNormal        = 1000
	CloseGoingAway     = 1001 // server shutdown
	ClosePolicy        = 1008 // no session, bad room, persistent flooding
	CloseTooBig        = 1009 // frame above the read limit (sent by gws)
	CloseInternal      = 1011
	CloseSlowConsumer  = 1013 // outbound queue full: "try again later", reconnect with since
	DefaultRoom        = "lobby"
	MaxRoomLen         = 64
	MaxCIDLen          = 64
	DefaultMaxContent  = 2000
	DefaultMaxNickName = 32
)

// ValidRoom reports whether name is 1–64 of [A-Za-z0-9_-].
func ValidRoom(name string) bool {
	if len(name) == 0 || len(name) > MaxRoomLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// ErrNotAllowed refuses a recall or reaction the sender may not make (another user's
// message, past the recall window, no such message).
const ErrNotAllowed = "ERR_NOT_ALLOWED"
