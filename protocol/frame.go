package protocol

import "encoding/binary"

// TextFrame returns a complete unmasked server text frame (header + payload), built
// once and shared by every recipient's outbound queue.
func TextFrame(payload []byte) []byte {
	n := len(payload)
	var f []byte
	switch {
	case n < 126:
		f = make([]byte, 2, 2+n)
		f[1] = byte(n)
	case n <= 0xFFFF:
		f = make([]byte, 4, 4+n)
		f[1] = 126
		binary.BigEndian.PutUint16(f[2:], uint16(n))
	default:
		f = make([]byte, 10, 10+n)
		f[1] = 127
		binary.BigEndian.PutUint64(f[2:], uint64(n))
	}
	f[0] = 0x81 // FIN + text
	return append(f, payload...)
}

// PingFrame is an empty server ping.
var PingFrame = []byte{0x89, 0x00}

// PongFrame returns a pong echoing a ping's payload (≤ 125 bytes by RFC 6455).
func PongFrame(payload []byte) []byte {
	payload = payload[:min(len(payload), 125)]
	return append([]byte{0x8A, byte(len(payload))}, payload...)
}

// BeginFrame reserves a text frame header at the end of b; append the payload,
// then call EndFrame. This builds many frames into one buffer without copies.
func BeginFrame(b []byte) ([]byte, int) {
	return append(b, 0x81, 0, 0, 0), len(b)
}

// EndFrame writes the header reserved by BeginFrame at start for the payload after it.
func EndFrame(b []byte, start int) []byte {
	n := len(b) - start - 4
	switch {
	case n < 126:
		b[start+1] = byte(n)
		copy(b[start+2:], b[start+4:])
		return b[:len(b)-2]
	case n <= 0xFFFF:
		b[start+1] = 126
		binary.BigEndian.PutUint16(b[start+2:], uint16(n))
		return b
	default:
		b = append(b, make([]byte, 6)...)
		copy(b[start+10:], b[start+4:len(b)-6])
		b[start+1] = 127
		binary.BigEndian.PutUint64(b[start+2:], uint64(n))
		return b
	}
}
