package transport

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pandachat/pandachat/protocol"
)

// clientFrame builds a masked client frame header (b0 = FIN/RSV/opcode) with
// the given length in the shortest form, or in the 8-byte form when long8.
func clientHeader(b0 byte, length uint64, long8 bool) []byte {
	h := []byte{b0, 0x80}
	switch {
	case long8 || length > 0xFFFF:
		h[1] |= 127
		h = binary.BigEndian.AppendUint64(h, length)
	case length > 125:
		h[1] |= 126
		h = binary.BigEndian.AppendUint16(h, uint16(length))
	default:
		h[1] |= byte(length)
	}
	return append(h, 1, 2, 3, 4) // mask key
}

func clientFrame(b0 byte, payload []byte) []byte {
	return append(clientHeader(b0, uint64(len(payload)), false), payload...)
}

// The frame from the field: a 64-bit length with its top bit set, which gws
// v1.8.9 turns into a negative int and panics on.
var killerFrame = []byte{0x81, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0x05, 0x11, 0x22, 0x33, 0x44}

func TestWireParserRefuses(t *testing.T) {
	const limit = 64 << 10
	good := clientFrame(0x81, []byte("hello"))
	cases := []struct {
		name  string
		in    []byte
		code  int
		cause string
	}{
		{"top bit of the 64-bit length", killerFrame, closeProtocolError, "most significant bit"},
		{"length 2^64-1", clientHeader(0x82, 1<<64-1, true), closeProtocolError, "most significant bit"},
		{"length 2^63-1", clientHeader(0x81, 1<<63-1, true), protocol.CloseTooBig, "limit"},
		{"length just above the limit", clientHeader(0x81, limit+1, false), protocol.CloseTooBig, "limit"},
		{"continuation above the limit", clientHeader(0x00, limit+1, false), protocol.CloseTooBig, "limit"},
		{"RSV1", clientFrame(0xC1, []byte("x")), closeProtocolError, "reserved"},
		{"RSV2", clientFrame(0xA1, []byte("x")), closeProtocolError, "reserved"},
		{"RSV3", clientFrame(0x91, []byte("x")), closeProtocolError, "reserved"},
		{"opcode 3", clientFrame(0x83, nil), closeProtocolError, "opcode"},
		{"opcode 7", clientFrame(0x87, nil), closeProtocolError, "opcode"},
		{"opcode 0xB", clientFrame(0x8B, nil), closeProtocolError, "opcode"},
		{"opcode 0xF", clientFrame(0x8F, nil), closeProtocolError, "opcode"},
		{"fragmented ping", clientFrame(0x09, nil), closeProtocolError, "fragmented"},
		{"fragmented close", clientFrame(0x08, []byte{3, 232}), closeProtocolError, "fragmented"},
		{"ping of 126 bytes", clientHeader(0x89, 126, false), closeProtocolError, "125"},
		{"pong with a 64-bit length", clientHeader(0x8A, 1<<63, true), closeProtocolError, "125"},
		{"unmasked text", []byte{0x81, 0x02, 'h', 'i'}, closeProtocolError, "masked"},
		{"unmasked ping", []byte{0x89, 0x00}, closeProtocolError, "masked"},
		{"after a good frame", append(append([]byte(nil), good...), killerFrame...), closeProtocolError, "most significant bit"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Whole, and one byte at a time: the verdict must not depend on how
			// the bytes arrive.
			for _, step := range []int{len(c.in), 1, 3} {
				p := newWireParser(limit)
				passed, code, reason := 0, 0, ""
				for i := 0; i < len(c.in) && code == 0; i += step {
					var n int
					n, code, reason = p.feed(c.in[i:min(i+step, len(c.in))])
					passed += n
				}
				if code != c.code || !strings.Contains(reason, c.cause) {
					t.Fatalf("step %d: got %d %q, want %d (%s)", step, code, reason, c.code, c.cause)
				}
				if c.name == "after a good frame" && (passed < len(good) || passed >= len(c.in)) {
					t.Errorf("step %d: passed %d bytes; want the good frame's %d and not the whole refused header", step, passed, len(good))
				}
			}
		})
	}
}

func TestWireParserAccepts(t *testing.T) {
	const limit = 64 << 10
	var stream []byte
	for _, f := range [][]byte{
		clientFrame(0x81, []byte("hello")),
		clientFrame(0x82, bytes.Repeat([]byte{0xFF}, 126)),          // 16-bit length
		append(clientHeader(0x81, 300, true), make([]byte, 300)...), // 64-bit form of a small length
		clientFrame(0x01, []byte("frag")),                           // first fragment
		clientFrame(0x80, []byte("ment")),                           // last fragment
		clientFrame(0x89, bytes.Repeat([]byte{'p'}, 125)),           // ping at the control limit
		clientFrame(0x8A, nil),
		append(clientHeader(0x82, limit, false), make([]byte, limit)...), // exactly the limit
		clientFrame(0x88, []byte{3, 232}),
	} {
		stream = append(stream, f...)
	}
	for _, step := range []int{len(stream), 1, 7, 4096} {
		p := newWireParser(limit)
		for i := 0; i < len(stream); i += step {
			b := stream[i:min(i+step, len(stream))]
			if n, code, reason := p.feed(b); code != 0 || n != len(b) {
				t.Fatalf("step %d at %d: refused %d %q (passed %d of %d)", step, i, code, reason, n, len(b))
			}
		}
		if p.state != wireFirst {
			t.Errorf("step %d: parser ends in state %d, want at a frame boundary", step, p.state)
		}
	}
}

// More than maxControlFrames control frames within controlWindow: 1008; the
// same number spread wider is fine.
func TestWireParserControlFlood(t *testing.T) {
	var clock time.Duration
	p := newWireParser(1 << 10)
	p.now = func() time.Duration { return clock }
	ping := clientFrame(0x89, nil)
	pong := clientFrame(0x8A, []byte("x"))
	for i := 0; i < maxControlFrames; i++ {
		f := ping
		if i%2 == 1 {
			f = pong
		}
		if _, code, reason := p.feed(f); code != 0 {
			t.Fatalf("control frame %d refused: %d %s", i+1, code, reason)
		}
		clock += controlWindow / 40 // 20 frames in half the window
	}
	if _, code, _ := p.feed(ping); code != protocol.ClosePolicy {
		t.Fatalf("control frame %d within %s: code %d, want 1008", maxControlFrames+1, controlWindow, code)
	}

	// Paced: one every window/maxControlFrames is never more than the limit.
	p = newWireParser(1 << 10)
	p.now = func() time.Duration { return clock }
	for i := 0; i < 5*maxControlFrames; i++ {
		if _, code, reason := p.feed(ping); code != 0 {
			t.Fatalf("paced control frame %d refused: %d %s", i+1, code, reason)
		}
		clock += controlWindow / maxControlFrames
	}
	// Data frames do not count.
	p = newWireParser(1 << 10)
	p.now = func() time.Duration { return clock }
	for i := 0; i < 100; i++ {
		if _, code, _ := p.feed(clientFrame(0x81, []byte("x"))); code != 0 {
			t.Fatalf("data frame %d refused", i)
		}
	}
}

// refWire is the parser's specification, written the simple way: the whole
// stream at once, frame by frame. It returns where the refused frame starts
// and its close code, or (len(b), 0) when every complete header is fine.
func refWire(b []byte, limit uint64) (pass, code int) {
	controls := 0
	for i := 0; i < len(b); {
		start := i
		b0 := b[i]
		op := b0 & 0x0f
		control := op >= 8
		switch {
		case b0&0x70 != 0:
			return start, closeProtocolError
		case op > 2 && op < 8 || op > 10:
			return start, closeProtocolError
		case control && b0&0x80 == 0:
			return start, closeProtocolError
		}
		if control {
			if controls++; controls > maxControlFrames {
				return start, protocol.ClosePolicy // the test clock stands still
			}
		}
		if i+1 >= len(b) {
			return len(b), 0
		}
		b1 := b[i+1]
		if b1&0x80 == 0 {
			return start, closeProtocolError
		}
		i += 2
		length := uint64(b1 & 0x7f)
		ext := map[uint64]int{126: 2, 127: 8}[length]
		if ext > 0 {
			if i+ext > len(b) {
				return len(b), 0
			}
			length = 0
			for _, c := range b[i : i+ext] {
				length = length<<8 | uint64(c)
			}
			i += ext
		}
		switch {
		case control && length > 125:
			return start, closeProtocolError
		case !control && length>>63 != 0:
			return start, closeProtocolError
		case !control && length > limit:
			return start, protocol.CloseTooBig
		}
		i += 4 // mask key
		if uint64(len(b)-min(i, len(b))) < length {
			return len(b), 0
		}
		i += int(length)
	}
	return len(b), 0
}

// FuzzWireHeader checks the incremental parser against refWire on any bytes,
// cut into pieces anywhere.
func FuzzWireHeader(f *testing.F) {
	f.Add(killerFrame, uint8(1))
	f.Add(clientHeader(0x81, 1<<64-1, true), uint8(3))
	f.Add(append(clientFrame(0x81, []byte("hi")), clientFrame(0x89, []byte("p"))...), uint8(2))
	f.Add(clientHeader(0x81, 65537, false), uint8(5))
	f.Add([]byte{0x81, 0x02, 'h', 'i'}, uint8(0))
	f.Add(bytes.Repeat(clientFrame(0x89, nil), 25), uint8(6))
	f.Fuzz(func(t *testing.T, data []byte, step uint8) {
		const limit = 1 << 10
		wantPass, wantCode := refWire(data, limit)
		p := newWireParser(limit)
		p.now = func() time.Duration { return time.Second } // a clock that stands still
		s := int(step)%17 + 1
		passed, code := 0, 0
		for i := 0; i < len(data) && code == 0; i += s {
			var n int
			n, code, _ = p.feed(data[i:min(i+s, len(data))])
			if n < 0 || n > min(s, len(data)-i) {
				t.Fatalf("pass %d out of range", n)
			}
			passed += n
		}
		if code != wantCode {
			t.Fatalf("code %d, want %d (%x)", code, wantCode, data)
		}
		// gws may see the frames before a refused one, and at most the first 9
		// bytes of its header (the refusal comes with the last length byte at
		// the latest), never all of it.
		if code != 0 && (passed < wantPass || passed > wantPass+9) {
			t.Fatalf("passed %d bytes, the refused frame starts at %d (%x)", passed, wantPass, data)
		}
		if code == 0 && passed != len(data) {
			t.Fatalf("passed %d of %d bytes of a good stream", passed, len(data))
		}
	})
}

// Bytes the HTTP server had already read behind the request go through the
// parser like any other: the frame is refused with a close frame, and Read
// fails so that gws's read loop ends.
func TestWireConnChecksEarlyBytes(t *testing.T) {
	srv, cli := tcpPair(t, 0)
	good := clientFrame(0x81, []byte("first"))
	wc := newWireConn(srv, append(append([]byte(nil), good...), killerFrame...), 64<<10, 5*time.Second)
	wc.startFraming()
	buf := make([]byte, 1024)
	n, err := wc.Read(buf)
	if err != nil || !bytes.Equal(buf[:n], good) {
		t.Fatalf("first Read: %q, %v; want the good frame before the refused one", buf[:n], err)
	}
	n, err = wc.Read(buf)
	var we *wireError
	if n != 0 || err == nil || !errors.As(err, &we) || we.code != closeProtocolError {
		t.Fatalf("second Read: %d, %v; want a refusal", n, err)
	}
	if _, err := wc.Read(buf); err == nil {
		t.Fatal("Read after a refusal succeeded")
	}
	_ = wc.Close()
	if _, code := readFrames(cli); code != closeProtocolError {
		t.Errorf("peer got close %d, want 1002", code)
	}
	// A later close frame (gws's own) is not written after ours.
	if _, err := wc.Write([]byte{0x88, 0x02, 0x03, 0xE8}); err == nil {
		t.Error("a second close frame was written")
	}
}

// The refusal's close frame waits for a batch in progress: it never lands
// inside a data frame, and neither does one that gws writes itself.
func TestWireConnOneWritePath(t *testing.T) {
	srv, cli := tcpPair(t, 16<<10)
	wc := newWireConn(srv, nil, 64<<10, 5*time.Second)
	wc.startFraming()
	var frames [][]byte
	for i := 0; i < 40; i++ {
		frames = append(frames, protocol.TextFrame(bytes.Repeat([]byte{byte('a' + i%26)}, 100<<10)))
	}
	want := len(frames)
	done := make(chan error, 1)
	go func() { done <- wc.writeFrames(frames) }()

	// Once the batch is on its way, gws writes a close frame.
	br := bufio.NewReaderSize(cli, 64<<10)
	if _, err := br.Peek(1); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() {
		_, err := wc.Write([]byte{0x88, 0x02, 0x03, 0xE9}) // 1001
		closed <- err
	}()
	texts, code := readFrames(br)
	if err := <-done; err != nil {
		t.Fatalf("writeFrames: %v", err)
	}
	if err := <-closed; err != nil {
		t.Fatalf("close frame: %v", err)
	}
	if len(texts) != want || code != protocol.CloseGoingAway {
		t.Fatalf("got %d whole frames then close %d; want %d then 1001", len(texts), code, want)
	}
	for i, s := range texts {
		if len(s) != 100<<10 || strings.Trim(s, string(rune('a'+i%26))) != "" {
			t.Fatalf("frame %d torn", i)
		}
	}
	if err := wc.writeFrames([][]byte{protocol.TextFrame([]byte("late"))}); err == nil {
		t.Error("a data frame was written after the close frame")
	}
}

// plainConn hides the socket behind a net.Conn, as TLS does: no writev.
type plainConn struct{ net.Conn }

// writeFrames sends frames larger than a chunk, and many small ones, intact:
// with writev on a socket, and coalesced on a connection without it.
func TestWireConnWriteFramesChunks(t *testing.T) {
	for _, vectored := range []bool{true, false} {
		t.Run(map[bool]string{true: "writev", false: "coalesced"}[vectored], func(t *testing.T) {
			srv, cli := tcpPair(t, 0)
			var conn net.Conn = srv
			if !vectored {
				conn = plainConn{srv}
			}
			testWriteFramesChunks(t, conn, cli, vectored)
		})
	}
}

func testWriteFramesChunks(t *testing.T, srv, cli net.Conn, vectored bool) {
	wc := newWireConn(srv, nil, 64<<10, 5*time.Second)
	wc.startFraming()
	if wc.vectored != vectored {
		t.Fatalf("vectored = %v, want %v", wc.vectored, vectored)
	}
	var frames [][]byte
	var want []string
	for i, size := range []int{10, writeChunk - 2, writeChunk + 5, 1, 3*writeChunk + 7, 0, 200} {
		p := bytes.Repeat([]byte{byte('A' + i)}, size)
		frames = append(frames, protocol.TextFrame(p))
		want = append(want, string(p))
	}
	for i := 0; i < 3000; i++ {
		p := []byte{byte('a' + i%26)}
		frames = append(frames, protocol.TextFrame(p))
		want = append(want, string(p))
	}
	orig := make([][]byte, len(frames))
	for i, f := range frames {
		orig[i] = bytes.Clone(f)
	}
	shared := frames[3] // a frame other queues hold too
	var got []string
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); got, _ = readFrames(cli) }()
	if err := wc.writeFrames(frames); err != nil {
		t.Fatal(err)
	}
	_ = srv.Close()
	wg.Wait()
	if len(got) != len(want) {
		t.Fatalf("got %d frames, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("frame %d differs (%d bytes, want %d)", i, len(got[i]), len(want[i]))
		}
	}
	if !bytes.Equal(shared, orig[3]) {
		t.Error("writeFrames changed the bytes of a shared frame")
	}
}

// A write takes at most writeChunk bytes, and always makes progress.
func TestChunkOf(t *testing.T) {
	mk := func(sizes ...int) [][]byte {
		var f [][]byte
		for _, n := range sizes {
			f = append(f, make([]byte, n))
		}
		return f
	}
	many := make([]int, 10000)
	for i := range many {
		many[i] = 3
	}
	for _, c := range []struct {
		name    string
		frames  [][]byte
		n, over int
	}{
		{"one small", mk(10), 1, 0},
		{"exactly a chunk", mk(writeChunk), 1, 0},
		{"a frame above a chunk", mk(writeChunk + 7), 1, 7},
		{"the chunk ends inside the second", mk(writeChunk-2, 10), 2, 8},
		{"the chunk ends between frames", mk(writeChunk-10, 10, 5), 2, 0},
		{"many small", mk(many...), len(many), 0},
		{"empty slices", mk(0, 0, 0), 3, 0},
	} {
		n, over := chunkOf(c.frames)
		if n != c.n || over != c.over {
			t.Errorf("%s: chunkOf = %d, %d; want %d, %d", c.name, n, over, c.n, c.over)
		}
	}
}

// A peer that takes nothing makes writeFrames fail within the write timeout,
// on every write path.
func TestWireConnWriteTimeout(t *testing.T) {
	for _, vectored := range []bool{true, false} {
		t.Run(map[bool]string{true: "writev", false: "coalesced"}[vectored], func(t *testing.T) {
			srv, _ := tcpPair(t, 4096)
			var conn net.Conn = srv
			if !vectored {
				conn = plainConn{srv}
			}
			wc := newWireConn(conn, nil, 64<<10, 200*time.Millisecond)
			wc.startFraming()
			var frames [][]byte
			for i := 0; i < 64; i++ {
				frames = append(frames, protocol.TextFrame(make([]byte, 64<<10)))
			}
			start := time.Now()
			err := wc.writeFrames(frames)
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("writeFrames to a peer that reads nothing: %v, want a timeout", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("gave up after %s", d)
			}
		})
	}
}

// Reads pass through unchanged until a refusal.
func TestWireConnPassesGoodStream(t *testing.T) {
	srv, cli := tcpPair(t, 0)
	wc := newWireConn(srv, nil, 64<<10, 5*time.Second)
	var stream []byte
	for i := 0; i < 200; i++ {
		stream = append(stream, clientFrame(0x81, bytes.Repeat([]byte{'x'}, i*37))...)
	}
	go func() { _, _ = cli.Write(stream); _ = cli.Close() }()
	got, err := io.ReadAll(wc)
	if err != nil || !bytes.Equal(got, stream) {
		t.Fatalf("read %d of %d bytes, %v", len(got), len(stream), err)
	}
}

var _ net.Conn = (*wireConn)(nil)
