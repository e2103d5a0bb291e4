package transport

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/pandachat/pandachat/protocol"
)

// Limits on control frames (ping, pong, close) from one connection: answering
// them costs the server a write each, so a client may send at most this many
// within the window; one more closes the connection with 1008.
const (
	maxControlFrames = 20
	controlWindow    = 10 * time.Second
)

// Close codes for refused frames (RFC 6455 §7.4.1).
const (
	closeProtocolError = 1002 // malformed frame: reserved bits, opcode, length, mask, fragmented control frame
)

// wireError is why the wire refused the client's stream; gws's read loop ends
// with it and OnClose logs it.
type wireError struct {
	code   int
	reason string
}

func (e *wireError) Error() string {
	return fmt.Sprintf("refused frame: %s (close %d)", e.reason, e.code)
}

// wireParser follows the client's byte stream frame by frame and checks each
// frame header as its bytes go by, before gws parses it: gws v1.8.9 trusts the
// 64-bit length field (docs/gws-upstream.md), so nothing it cannot handle may
// reach it. Payload bytes are skipped, never copied or held.
type wireParser struct {
	state  wireState
	need   uint8  // bytes left in the extended length or the mask key
	op     byte   // the current frame's first byte
	length uint64 // the current frame's payload length, while it is read
	left   uint64 // payload bytes still to skip
	limit  uint64 // largest data frame payload (the read limit)

	// Arrival times of the last maxControlFrames control frames, a ring, in
	// milliseconds of the clock (uint32: differences stay right across a wrap).
	ctrl    [maxControlFrames]uint32
	ctrlPos uint8
	ctrlN   uint8                // control frames seen, up to maxControlFrames
	now     func() time.Duration // monotonic clock; tests may replace it
}

// wireEpoch anchors the parsers' monotonic clock.
var wireEpoch = time.Now()

func sinceEpoch() time.Duration { return time.Since(wireEpoch) }

type wireState uint8

const (
	wireFirst   wireState = iota // FIN, RSV1-3, opcode
	wireSecond                   // MASK, length code
	wireLength                   // extended length: 2 or 8 bytes
	wireMask                     // masking key: 4 bytes
	wirePayload                  // payload: skipped
)

func newWireParser(limit int) wireParser {
	return wireParser{limit: uint64(max(limit, 0)), now: sinceEpoch}
}

// feed parses the next bytes of the stream. When a frame breaks the rules it
// returns the close code and reason, and pass: how many bytes of b belong to
// frames before the refused one (gws may read those; the refused frame's
// header never reaches it whole). Otherwise pass is len(b) and code is 0.
func (p *wireParser) feed(b []byte) (pass int, code int, reason string) {
	frameStart := 0 // where the current frame began in b (0 when it began earlier)
	for i := 0; i < len(b); {
		switch p.state {
		case wirePayload:
			n := uint64(len(b) - i)
			if n > p.left {
				n = p.left
			}
			p.left -= n
			i += int(n)
			if p.left == 0 {
				p.state = wireFirst
			}
			continue
		case wireFirst:
			frameStart = i
			p.op = b[i]
			if code, reason = p.checkFirst(); code != 0 {
				return frameStart, code, reason
			}
			p.state = wireSecond
		case wireSecond:
			c := b[i]
			if c&0x80 == 0 {
				return frameStart, closeProtocolError, "client frame not masked"
			}
			switch n := c & 0x7f; n {
			case 126:
				p.state, p.need, p.length = wireLength, 2, 0
			case 127:
				p.state, p.need, p.length = wireLength, 8, 0
			default:
				p.length = uint64(n)
				if code, reason = p.checkLength(); code != 0 {
					return frameStart, code, reason
				}
				p.state, p.need = wireMask, 4
			}
		case wireLength:
			p.length = p.length<<8 | uint64(b[i])
			p.need--
			if p.need == 0 {
				if code, reason = p.checkLength(); code != 0 {
					return frameStart, code, reason
				}
				p.state, p.need = wireMask, 4
			}
		case wireMask:
			p.need--
			if p.need == 0 {
				p.left = p.length
				if p.left == 0 {
					p.state = wireFirst
				} else {
					p.state = wirePayload
				}
			}
		}
		i++
	}
	return len(b), 0, ""
}

// checkFirst checks a frame's first byte.
func (p *wireParser) checkFirst() (int, string) {
	if p.op&0x70 != 0 {
		return closeProtocolError, "reserved bits set" // no extension is negotiated
	}
	switch op := p.op & 0x0f; op {
	case 0x0, 0x1, 0x2: // continuation, text, binary
		return 0, ""
	case 0x8, 0x9, 0xA: // close, ping, pong
		if p.op&0x80 == 0 {
			return closeProtocolError, "fragmented control frame"
		}
		return p.countControl()
	default:
		return unknownOpcode(op)
	}
}

// unknownOpcode is out of line: the read path's frames stay small.
//
//go:noinline
func unknownOpcode(op byte) (int, string) {
	return closeProtocolError, fmt.Sprintf("unknown opcode %#x", op)
}

// countControl records a control frame; one more than maxControlFrames within
// controlWindow is refused.
func (p *wireParser) countControl() (int, string) {
	now := uint32(p.now() / time.Millisecond)
	if p.ctrlN == maxControlFrames && time.Duration(now-p.ctrl[p.ctrlPos])*time.Millisecond < controlWindow {
		// p.ctrl[p.ctrlPos] is the arrival maxControlFrames control frames ago.
		return tooManyControlFrames()
	}
	p.ctrl[p.ctrlPos] = now
	p.ctrlPos = (p.ctrlPos + 1) % maxControlFrames
	if p.ctrlN < maxControlFrames {
		p.ctrlN++
	}
	return 0, ""
}

// tooManyControlFrames is out of line: the read path's frames stay small.
//
//go:noinline
func tooManyControlFrames() (int, string) {
	return protocol.ClosePolicy, fmt.Sprintf("more than %d control frames in %s", maxControlFrames, controlWindow)
}

// checkLength checks the payload length once all of it is known.
func (p *wireParser) checkLength() (int, string) {
	if p.op&0x08 != 0 { // control frame
		if p.length > 125 {
			return closeProtocolError, "control frame longer than 125 bytes"
		}
		return 0, ""
	}
	if p.length>>63 != 0 {
		return closeProtocolError, "payload length with the most significant bit set"
	}
	if p.length > p.limit {
		return protocol.CloseTooBig, fmt.Sprintf("frame of %d bytes, limit %d", p.length, p.limit)
	}
	return 0, ""
}

// wireConn is the hijacked connection as gws sees it.
//
// Reading, it runs every byte from the client through a wireParser and ends
// the stream at the first refused frame: it writes the close frame itself and
// Read returns a *wireError, so gws's read loop ends and OnClose runs.
//
// Writing, it is the connection's one write path. gws writes each frame (and
// the handshake) with one Write call; the outbox writes batches of whole frames
// with writeFrames. Both take wmu, so a close frame never lands inside a data
// frame, and every write sets its own deadline under the lock, so no writer
// depends on a deadline another one set or cleared. Once a close frame went
// out nothing more is written.
type wireConn struct {
	net.Conn
	pending      []byte // bytes the HTTP server had read behind the request; parsed first
	writeTimeout time.Duration

	// Read side: only gws's read goroutine touches these.
	p      wireParser
	rerr   *wireError
	rb     []byte             // the buffer of the raw read in progress
	rn     int                // what it read
	rerrno syscall.Errno      // and its error
	readFn func(uintptr) bool // c.readRaw, bound once

	wmu       sync.Mutex
	framing   bool            // the handshake is written: every Write is one frame
	closeSent bool            // a close frame was written
	raw       syscall.RawConn // the socket, for writev and reads (Linux); nil: see vectored
	vectored  bool            // a kernel socket elsewhere: net.Buffers; false (TLS): chunks are copied
	iov       net.Buffers     // the chunk being written by net.Buffers, a view into the caller's frames
	partial   []byte          // the rest of a frame a direct write (tryWriteFrames) left half-written
}

// chunkPool holds the buffers that coalesce a chunk of frames for connections
// without writev (TLS, which copies into records anyway): one buffer per write
// in progress, not per connection.
var chunkPool = sync.Pool{New: func() any { b := make([]byte, 0, writeChunk); return &b }}

// newWireConn wraps conn; buffered holds bytes already read from it.
func newWireConn(conn net.Conn, buffered []byte, readLimit int, writeTimeout time.Duration) *wireConn {
	_, vectored := conn.(syscall.Conn) // *net.TCPConn, *net.UnixConn: net.Buffers becomes one writev
	c := &wireConn{Conn: conn, pending: buffered, writeTimeout: writeTimeout, p: newWireParser(readLimit),
		raw: rawSocket(conn), vectored: vectored}
	c.readFn = c.readRaw
	return c
}

// Read hands gws the client's bytes up to the first refused frame. Every idle
// read loop is parked under this frame, so it is kept small (the rare cases
// are in readRest and refuse): the loop then fits the goroutine's first stack.
func (c *wireConn) Read(b []byte) (int, error) {
	if c.rerr != nil || c.pending != nil {
		return c.readRest(b)
	}
	if c.raw == nil {
		n, err := c.Conn.Read(b)
		return c.check(b[:n], err)
	}
	// The socket itself: parked under rawConn.Read and FD.RawRead, 144 bytes
	// of frames fewer than under net.Conn's Read.
	c.rb = b
	err := c.raw.Read(c.readFn)
	c.rb = nil
	if err != nil || c.rerrno != 0 || c.rn == 0 {
		return c.rawEnd(len(b), err)
	}
	return c.check(b[:c.rn], nil)
}

// rawEnd is a raw read that brought no bytes, as net.Conn's Read gives it.
func (c *wireConn) rawEnd(asked int, err error) (int, error) {
	switch {
	case err != nil: // a deadline, or the socket closed
		return 0, err
	case c.rerrno != 0:
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError("read", c.rerrno)}
	case asked > 0:
		return 0, io.EOF
	}
	return 0, nil
}

// readRest reads the bytes the HTTP server had buffered, or fails as before.
func (c *wireConn) readRest(b []byte) (int, error) {
	if c.rerr != nil {
		return 0, c.rerr
	}
	n := copy(b, c.pending)
	c.pending = c.pending[n:]
	if len(c.pending) == 0 {
		c.pending = nil
	}
	return c.check(b[:n], nil)
}

// check passes read bytes to gws unless they hold a refused frame.
func (c *wireConn) check(b []byte, err error) (int, error) {
	pass, code, reason := c.p.feed(b)
	if code == 0 {
		return len(b), err
	}
	return c.refuse(pass, code, reason)
}

// refuse closes on a refused frame; gws still gets the frames before it.
func (c *wireConn) refuse(pass, code int, reason string) (int, error) {
	c.rerr = &wireError{code: code, reason: reason}
	c.writeClose(code, reason)
	if pass > 0 {
		return pass, nil // the frames before the refused one; the next Read fails
	}
	return 0, c.rerr
}

// startFraming is called once the handshake answer is written.
func (c *wireConn) startFraming() {
	c.wmu.Lock()
	c.framing = true
	c.wmu.Unlock()
}

// Write is gws's write path: the handshake, then one whole frame per call.
func (c *wireConn) Write(b []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closeSent {
		return 0, net.ErrClosed
	}
	if err := c.finishPartial(); err != nil {
		return 0, err
	}
	if c.framing && len(b) > 0 && b[0]&0x0f == 0x8 {
		c.closeSent = true
	}
	_ = c.Conn.SetWriteDeadline(time.Now().Add(c.writeTimeout))
	return c.Conn.Write(b)
}

// writeClose writes a close frame unless one went out already.
func (c *wireConn) writeClose(code int, reason string) {
	if len(reason) > 123 {
		reason = reason[:123]
	}
	f := make([]byte, 4, 4+len(reason))
	f[0], f[1] = 0x88, byte(2+len(reason))
	binary.BigEndian.PutUint16(f[2:], uint16(code))
	f = append(f, reason...)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closeSent {
		return
	}
	c.closeSent = true
	_ = c.finishPartial()
	_ = c.Conn.SetWriteDeadline(time.Now().Add(c.writeTimeout))
	_, _ = c.Conn.Write(f)
}

// tryWriteFrames writes what the socket takes of frames at once, on the
// caller's goroutine, without waiting: an idle connection's outbox then starts
// no writer for a write the kernel takes whole (the common case in a quiet
// room). rest is left for a writer, and half says a frame went out in part: its
// rest goes first, before any other write. Nothing is written while another
// write holds the lock, a frame is half-written, or the socket has no writev.
func (c *wireConn) tryWriteFrames(frames [][]byte) (rest [][]byte, half bool, err error) {
	if c.raw == nil || !c.wmu.TryLock() {
		return frames, false, nil
	}
	defer c.wmu.Unlock()
	if c.closeSent {
		return nil, false, net.ErrClosed
	}
	if c.partial != nil {
		return frames, true, nil
	}
	n, err := tryWritev(c.raw, frames)
	if err != nil {
		return nil, false, err
	}
	i := 0
	for i < len(frames) && n >= len(frames[i]) {
		n -= len(frames[i])
		i++
	}
	if n > 0 {
		c.partial = frames[i][n:]
		i++
	}
	return frames[i:], c.partial != nil, nil
}

// finishPartial writes the rest of a frame a direct write left half-written,
// so that nothing lands inside it. Lock must be held.
func (c *wireConn) finishPartial() error {
	if c.partial == nil {
		return nil
	}
	p := c.partial
	c.partial = nil
	_ = c.Conn.SetWriteDeadline(time.Now().Add(c.writeTimeout))
	return c.writeVec([][]byte{p})
}

// writeVec writes one chunk of frames: with writev on a kernel socket;
// otherwise coalesced, so that a chunk of small frames is one write (for TLS:
// one record) instead of one per frame. Lock must be held.
func (c *wireConn) writeVec(chunk [][]byte) error {
	if c.raw != nil {
		return writev(c.raw, chunk)
	}
	if c.vectored {
		c.iov = chunk
		_, err := c.iov.WriteTo(c.Conn)
		c.iov = nil
		return err
	}
	bp := chunkPool.Get().(*[]byte)
	b := (*bp)[:0]
	for _, f := range chunk {
		b = append(b, f...)
	}
	_, err := c.Conn.Write(b)
	*bp = b[:0]
	chunkPool.Put(bp)
	return err
}

// writeChunk is how much is written under one deadline: the write timeout
// then measures a peer's progress, not the size of a replay.
const writeChunk = 64 << 10

// chunkOf says what the next write takes of frames: the first n slices, but
// not the last over bytes of the nth; at most writeChunk bytes, and at least
// one slice.
func chunkOf(frames [][]byte) (n, over int) {
	size := 0
	for n < len(frames) && size < writeChunk {
		size += len(frames[n])
		n++
	}
	return n, max(size-writeChunk, 0)
}

// writeFrames writes whole frames, in order, straight from the caller's slices
// (writev where the connection supports it), holding the write lock for all of
// them and moving the deadline for each writeChunk bytes. The frames' bytes are
// only read; the slice headers in frames are consumed.
func (c *wireConn) writeFrames(frames [][]byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closeSent {
		return net.ErrClosed
	}
	if err := c.finishPartial(); err != nil {
		return err
	}
	for len(frames) > 0 {
		n, over := chunkOf(frames)
		var rest []byte // the part of the last frame beyond this chunk
		if over > 0 {
			last := frames[n-1]
			frames[n-1], rest = last[:len(last)-over], last[len(last)-over:]
		}
		_ = c.Conn.SetWriteDeadline(time.Now().Add(c.writeTimeout))
		if err := c.writeVec(frames[:n]); err != nil {
			return err
		}
		if rest != nil {
			frames[n-1] = rest
			n--
		}
		frames = frames[n:]
	}
	return nil
}
