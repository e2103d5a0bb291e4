package protocol_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/pandachat/pandachat/protocol"
)

// readFrame parses one unmasked server frame (RFC 6455 §5.2) from the start of b
// and checks that its length uses the shortest encoding.
func readFrame(t *testing.T, b []byte) (first byte, payload, rest []byte) {
	t.Helper()
	if len(b) < 2 {
		t.Fatalf("frame of %d bytes", len(b))
	}
	if b[1]&0x80 != 0 {
		t.Fatal("server frame is masked")
	}
	n, hdr := uint64(b[1]&0x7F), 2
	switch n {
	case 126:
		if len(b) < 4 {
			t.Fatal("short 16-bit length")
		}
		n, hdr = uint64(binary.BigEndian.Uint16(b[2:])), 4
		if n < 126 {
			t.Fatalf("length %d in 16 bits; 7 bits suffice", n)
		}
	case 127:
		if len(b) < 10 {
			t.Fatal("short 64-bit length")
		}
		n, hdr = binary.BigEndian.Uint64(b[2:]), 10
		if n>>63 != 0 {
			t.Fatal("64-bit length with the high bit set")
		}
		if n <= 0xFFFF {
			t.Fatalf("length %d in 64 bits; 16 bits suffice", n)
		}
	}
	if uint64(len(b)-hdr) < n {
		t.Fatalf("header says %d bytes, %d follow", n, len(b)-hdr)
	}
	return b[0], b[hdr : hdr+int(n)], b[hdr+int(n):]
}

var frameSizes = []int{0, 1, 125, 126, 127, 65535, 65536, 70000}

func payloadOf(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte('a' + i%26)
	}
	return p
}

func TestTextFrame(t *testing.T) {
	for _, n := range frameSizes {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			p := payloadOf(n)
			first, got, rest := readFrame(t, protocol.TextFrame(p))
			if first != 0x81 {
				t.Errorf("first byte %#x, want FIN+text 0x81", first)
			}
			if !bytes.Equal(got, p) || len(rest) != 0 {
				t.Errorf("payload of %d bytes with %d extra, want %d bytes exactly", len(got), len(rest), n)
			}
		})
	}
}

// TestBeginEndFrame builds frames of every size, one after another, into one
// buffer that already holds data, as a batched write does.
func TestBeginEndFrame(t *testing.T) {
	b := []byte("already queued")
	for _, n := range frameSizes {
		var start int
		b, start = protocol.BeginFrame(b)
		b = append(b, payloadOf(n)...)
		b = protocol.EndFrame(b, start)
	}
	rest, ok := bytes.CutPrefix(b, []byte("already queued"))
	if !ok {
		t.Fatalf("buffer contents overwritten: %.20q", b)
	}
	for _, n := range frameSizes {
		var first byte
		var p []byte
		first, p, rest = readFrame(t, rest)
		if first != 0x81 || !bytes.Equal(p, payloadOf(n)) {
			t.Errorf("frame of %d: first byte %#x, %d payload bytes (equal %v)", n, first, len(p), bytes.Equal(p, payloadOf(n)))
		}
	}
	if len(rest) != 0 {
		t.Errorf("%d bytes after the last frame", len(rest))
	}
	// Same bytes as TextFrame, also in a buffer with no spare capacity: EndFrame
	// grows it for the long header and reads nothing past its end.
	for _, n := range frameSizes {
		b, start := protocol.BeginFrame(nil)
		b = protocol.EndFrame(append(b, payloadOf(n)...), start)
		if !bytes.Equal(b, protocol.TextFrame(payloadOf(n))) {
			t.Errorf("size %d: BeginFrame+EndFrame differs from TextFrame", n)
		}
		for _, spare := range []int{0, 6} {
			tight := make([]byte, 0, 4+n+spare)
			tight, start = protocol.BeginFrame(tight)
			tight = protocol.EndFrame(append(tight, payloadOf(n)...), start)
			if !bytes.Equal(tight, protocol.TextFrame(payloadOf(n))) {
				t.Errorf("size %d, %d bytes spare: BeginFrame+EndFrame differs from TextFrame", n, spare)
			}
		}
	}
}

func TestControlFrames(t *testing.T) {
	first, p, rest := readFrame(t, protocol.PingFrame)
	if first != 0x89 || len(p) != 0 || len(rest) != 0 {
		t.Errorf("PingFrame = %#x", protocol.PingFrame)
	}
	for _, n := range []int{0, 5, 125, 126, 1000} {
		first, p, rest := readFrame(t, protocol.PongFrame(payloadOf(n)))
		want := payloadOf(min(n, 125)) // control frames carry at most 125 bytes
		if first != 0x8A || !bytes.Equal(p, want) || len(rest) != 0 {
			t.Errorf("PongFrame(%d bytes): first %#x, %d bytes, %d extra", n, first, len(p), len(rest))
		}
	}
}
