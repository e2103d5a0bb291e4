package transport

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pandachat/pandachat/protocol"
)

// tcpPair returns both ends of a loopback TCP connection; rcvbuf > 0 shrinks
// the client's receive buffer so that a peer that does not read fills up fast.
func tcpPair(t testing.TB, rcvbuf int) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		if rcvbuf > 0 {
			return c.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf) })
		}
		return nil
	}}
	client, err = d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

// closeRecorder stands in for gws: it writes a close frame through the
// connection's Write, as gws does, and closes the socket.
type closeRecorder struct {
	conn net.Conn
	mu   sync.Mutex
	code int
}

func (c *closeRecorder) close(code int, reason string) {
	c.mu.Lock()
	c.code = code
	c.mu.Unlock()
	p := binary.BigEndian.AppendUint16(nil, uint16(code))
	p = append(p, reason...)
	_, _ = c.conn.Write(append([]byte{0x88, byte(len(p))}, p...))
	_ = c.conn.Close()
}

func (c *closeRecorder) closed() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.code
}

// newTestOutbox puts an outbox on conn as handleWS does: through a wireConn
// past its handshake.
func newTestOutbox(conn net.Conn, frames int) (*outbox, *closeRecorder) {
	wc := newWireConn(conn, nil, 64<<10, 5*time.Second)
	wc.startFraming()
	cr := &closeRecorder{conn: wc}
	return &outbox{conn: wc, closeFn: cr.close, maxFrames: frames, maxBytes: 1 << 30,
		linger: 50 * time.Millisecond, log: slog.New(slog.DiscardHandler), direct: wc.raw != nil}, cr
}

// readFrames parses server frames until EOF: text payloads and the close code.
func readFrames(r io.Reader) (texts []string, closeCode int) {
	br := bufio.NewReader(r)
	for {
		var h [2]byte
		if _, err := io.ReadFull(br, h[:]); err != nil {
			return texts, closeCode
		}
		n := int(h[1] & 0x7f)
		switch n {
		case 126:
			var b [2]byte
			io.ReadFull(br, b[:])
			n = int(binary.BigEndian.Uint16(b[:]))
		case 127:
			var b [8]byte
			io.ReadFull(br, b[:])
			n = int(binary.BigEndian.Uint64(b[:]))
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(br, p); err != nil {
			return texts, closeCode
		}
		switch h[0] & 0x0f {
		case 0x1:
			texts = append(texts, string(p))
		case 0x8:
			return texts, int(binary.BigEndian.Uint16(p))
		}
	}
}

// Frames from several senders arrive whole and, per sender, in order; Close
// goes out behind them.
func TestOutboxOrderAndClose(t *testing.T) {
	srv, cli := tcpPair(t, 0)
	o, _ := newTestOutbox(srv, 1<<20)
	const senders, each = 4, 2000
	var wg sync.WaitGroup
	for s := 0; s < senders; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if !o.Send(protocol.TextFrame(fmt.Appendf(nil, "%d:%d:%0*d", s, i, i%300, 0))) {
					t.Errorf("send %d/%d refused", s, i)
					return
				}
			}
		}()
	}
	wg.Wait()
	o.Close(protocol.CloseGoingAway, "bye")
	texts, code := readFrames(cli)
	if code != protocol.CloseGoingAway {
		t.Errorf("close code %d, want 1001", code)
	}
	if len(texts) != senders*each {
		t.Fatalf("got %d frames, want %d", len(texts), senders*each)
	}
	next := make([]int, senders)
	for _, s := range texts {
		var from, i int
		if _, err := fmt.Sscanf(s, "%d:%d:", &from, &i); err != nil || i != next[from] {
			t.Fatalf("frame %q out of order or torn (want %d:%d)", s, from, next[from])
		}
		next[from]++
	}
}

// Close's last frame is the last text the peer reads, right before the close,
// however another sender races it and even on a full queue; a slow
// consumer's close drops it with the rest.
func TestOutboxCloseWithLastFrame(t *testing.T) {
	for _, full := range []bool{false, true} {
		srv, cli := tcpPair(t, 0)
		o, _ := newTestOutbox(srv, 4)
		if full {
			o.mu.Lock() // hold the writer off while the queue fills
			o.q = append(o.q, protocol.TextFrame([]byte("a")), protocol.TextFrame([]byte("b")), protocol.TextFrame([]byte("c")), protocol.TextFrame([]byte("d")))
			o.mu.Unlock()
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // the room, still fanning out
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
					o.Send(protocol.TextFrame([]byte("room")))
				}
			}
		}()
		time.Sleep(time.Millisecond)
		o.Close(protocol.ClosePolicy, "session ended", protocol.TextFrame([]byte("why")))
		close(stop)
		wg.Wait()
		texts, code := readFrames(cli)
		if code != protocol.ClosePolicy || len(texts) == 0 || texts[len(texts)-1] != "why" {
			t.Errorf("full=%v: got %d texts ending %q and close %d; want \"why\" last, then close 1008", full, len(texts), texts[max(0, len(texts)-1):], code)
		}
		for _, s := range texts[:max(0, len(texts)-1)] {
			if s == "why" {
				t.Errorf("full=%v: the last frame went out twice", full)
			}
		}
	}
	srv, cli := tcpPair(t, 0)
	o, _ := newTestOutbox(srv, 4)
	o.Close(protocol.CloseSlowConsumer, "slow consumer", protocol.TextFrame([]byte("why")))
	if texts, code := readFrames(cli); len(texts) != 0 || code != protocol.CloseSlowConsumer {
		t.Errorf("slow consumer: got %q and close %d; want no text and close 1013", texts, code)
	}
}

// A peer that reads nothing fills the queue: Send says so and never blocks.
// Close(1013) then discards what is queued: the close frame follows only the
// bytes already handed to the socket, and the peer gets fewer frames than
// were accepted.
func TestOutboxSlowConsumer(t *testing.T) {
	srv, cli := tcpPair(t, 4096)
	o, cr := newTestOutbox(srv, 8)
	refused, accepted := false, 0
	for i := 0; i < 10000 && !refused; i++ {
		refused = !o.Send(protocol.TextFrame(fmt.Appendf(nil, "%04d%03990d", i, 0)))
		if !refused {
			accepted++
		}
	}
	if !refused {
		t.Fatal("a peer that reads nothing never filled the queue")
	}
	o.Close(protocol.CloseSlowConsumer, "slow consumer")
	o.mu.Lock()
	queued, qBytes := len(o.q), o.qBytes
	o.mu.Unlock()
	if queued != 0 || qBytes != 0 {
		t.Errorf("after close 1013 the queue still holds %d frames (%d bytes)", queued, qBytes)
	}
	// Closing: frames are taken and dropped, and that is not a full queue.
	if !o.Send(protocol.TextFrame([]byte("late"))) {
		t.Error("Send to a closing connection reported a full queue")
	}
	texts, code := readFrames(cli)
	if code != protocol.CloseSlowConsumer {
		t.Errorf("close code %d, want 1013", code)
	}
	if len(texts) >= accepted {
		t.Errorf("the peer got all %d accepted frames (%d): the queue was not discarded", accepted, len(texts))
	}
	for i, s := range texts {
		if !strings.HasPrefix(s, fmt.Sprintf("%04d", i)) {
			t.Fatalf("frame %d is %.8q: out of order or late", i, s)
		}
	}
	if cr.closed() != protocol.CloseSlowConsumer {
		t.Errorf("closeFn got %d", cr.closed())
	}
}

// Once the socket is gone nothing is queued, Send does not report a full queue
// (the room must not count a slow consumer), and no writer is left behind:
// neither a lingering one nor a new one.
func TestOutboxGone(t *testing.T) {
	srv, cli := tcpPair(t, 0)
	go func() { _, _ = io.Copy(io.Discard, cli) }()
	// The writer lingers after a run of two batches or more: hold its first
	// batch until a second frame is queued, on any number of processors.
	first, more := make(chan struct{}), make(chan struct{})
	var once sync.Once
	h := func([][]byte) {
		once.Do(func() {
			close(first)
			<-more
		})
	}
	testHookWrite.Store(&h)
	defer testHookWrite.Store(nil)
	o, _ := newTestOutbox(srv, 16)
	o.direct = false     // about the writer: every frame goes through it
	o.linger = time.Hour // only gone can end the writer
	o.Send(protocol.TextFrame([]byte("x")))
	<-first
	o.Send(protocol.TextFrame([]byte("x")))
	close(more)
	for deadline := time.Now().Add(5 * time.Second); !o.parked(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the writer never lingered")
		}
	}
	if outboxWriters() == 0 {
		t.Fatal("no writer goroutine while the outbox says one lingers")
	}
	o.gone()
	if !o.Send(protocol.TextFrame([]byte("x"))) {
		t.Error("Send to a closed socket reported a full queue")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		o.mu.Lock()
		running, queued := o.running, len(o.q)
		o.mu.Unlock()
		if queued != 0 {
			t.Fatalf("%d frames queued for a closed socket", queued)
		}
		if !running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a writer is still running after the socket is gone")
		}
		time.Sleep(time.Millisecond)
	}
	// Not only the flag: the goroutine is gone too.
	for deadline := time.Now().Add(5 * time.Second); outboxWriters() > 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d writer goroutines left after the socket is gone", outboxWriters())
		}
	}
	// An idle outbox that learns it is gone starts no writer.
	srv2, _ := tcpPair(t, 0)
	o2, _ := newTestOutbox(srv2, 16)
	o2.gone()
	o2.mu.Lock()
	defer o2.mu.Unlock()
	if o2.running {
		t.Error("gone started a writer")
	}
}

// A direct write the socket takes only in part leaves a frame half-written:
// its rest goes out before anything else, whether the outbox's next frame and
// close or the read side's close frame comes next. The peer sees whole frames.
func TestOutboxDirectWriteHalfFrame(t *testing.T) {
	big := protocol.TextFrame(bytes.Repeat([]byte("a"), 1<<20+3))
	for _, next := range []string{"send and close", "close from the read side"} {
		t.Run(next, func(t *testing.T) {
			srv, cli := tcpPair(t, 4096)
			o, _ := newTestOutbox(srv, 16)
			if !o.direct {
				t.Skip("no writev on this platform")
			}
			// Fill the socket with direct writes until one goes out in part.
			var (
				frames int
				read   bytes.Buffer // what had to be read to make room at a frame boundary
			)
			for half := false; !half; {
				var rest [][]byte
				var err error
				rest, half, err = o.conn.tryWriteFrames([][]byte{big})
				switch {
				case err != nil:
					t.Fatal(err)
				case half || len(rest) == 0:
					frames++
				default: // full exactly at a frame's end: make a little room
					if _, err := io.CopyN(&read, cli, 100); err != nil {
						t.Fatal(err)
					}
				}
			}
			want, wantCode := frames, protocol.CloseNormal
			if next == "send and close" {
				o.Send(protocol.TextFrame([]byte("after")))
				o.Close(protocol.CloseNormal, "")
				want++
			} else {
				go func() { // as Read does on a bad frame; then gws closes the socket
					o.conn.writeClose(protocol.CloseGoingAway, "refused")
					_ = srv.Close()
				}()
				wantCode = protocol.CloseGoingAway
			}
			texts, code := readFrames(io.MultiReader(&read, cli))
			if code != wantCode || len(texts) != want {
				t.Fatalf("peer got %d frames and close %d, want %d and close %d", len(texts), code, want, wantCode)
			}
			for i, s := range texts[:frames] {
				if s != string(big[10:]) {
					t.Fatalf("frame %d is torn (%d bytes)", i, len(s))
				}
			}
			if want > frames && texts[frames] != "after" {
				t.Fatalf("last frame %.20q, want \"after\"", texts[frames])
			}
		})
	}
}

func (o *outbox) parked() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.running && o.waiting
}

// outboxWriters counts the goroutines running an outbox's writer, in this test
// binary (other tests' writers end within their 50 ms linger).
func outboxWriters() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "transport.(*outbox).run(")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// deadlineConn records the write deadline and fails the test when a write
// runs without one, or when one is cleared.
type deadlineConn struct {
	net.Conn
	t      testing.TB
	mu     sync.Mutex
	dl     time.Time
	writes int
}

func (c *deadlineConn) SetWriteDeadline(d time.Time) error {
	c.mu.Lock()
	c.dl = d
	c.mu.Unlock()
	if d.IsZero() {
		c.t.Error("the write deadline was cleared")
	}
	return c.Conn.SetWriteDeadline(d)
}

func (c *deadlineConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	dl := c.dl
	c.writes++
	c.mu.Unlock()
	if dl.IsZero() || time.Until(dl) <= 0 {
		c.t.Error("a write ran without a write deadline")
	}
	return c.Conn.Write(b)
}

// Writers come and go (one-off writes end the writer at once); each write
// still runs under a deadline of its own, and no ending writer clears the
// deadline of the next one.
func TestOutboxRestartedWriterKeepsDeadline(t *testing.T) {
	srv, cli := tcpPair(t, 0)
	dc := &deadlineConn{Conn: srv, t: t}
	o, _ := newTestOutbox(dc, 16)
	var wg sync.WaitGroup
	wg.Add(1)
	var got []string
	go func() { defer wg.Done(); got, _ = readFrames(cli) }()
	const n = 2000
	for i := 0; i < n; i++ {
		for !o.Send(protocol.TextFrame(fmt.Appendf(nil, "%d", i))) {
			time.Sleep(time.Millisecond) // a full queue: let the writer catch up
		}
		if i%3 == 0 {
			runtime.Gosched()
		}
	}
	o.Close(protocol.CloseNormal, "")
	wg.Wait()
	if len(got) != n {
		t.Fatalf("peer got %d frames, want %d", len(got), n)
	}
	dc.mu.Lock()
	defer dc.mu.Unlock()
	if dc.writes == 0 {
		t.Fatal("no write went through the connection")
	}
}

// A panic in the writer closes that connection only, is logged with its
// stack, and leaves no writer behind; other connections write on.
func TestOutboxWriterPanic(t *testing.T) {
	var logs logBuffer
	h := func(batch [][]byte) {
		for _, f := range batch {
			if bytes.Contains(f, []byte("boom")) {
				panic("injected writer panic")
			}
		}
	}
	testHookWrite.Store(&h)
	defer testHookWrite.Store(nil)

	srv, cli := tcpPair(t, 0)
	o, _ := newTestOutbox(srv, 16)
	o.log = slog.New(slog.NewTextHandler(&logs, nil))
	other, otherCli := tcpPair(t, 0)
	o2, _ := newTestOutbox(other, 16)

	o.Send(protocol.TextFrame([]byte("boom")))
	if texts, code := readFrames(cli); len(texts) != 0 || code != 0 {
		t.Errorf("peer got %q, close %d; want the connection dropped", texts, code)
	}
	o.mu.Lock()
	dead, running := o.dead, o.running
	o.mu.Unlock()
	if !dead || running {
		t.Errorf("after the panic: dead=%v running=%v", dead, running)
	}
	out := logs.String()
	if !strings.Contains(out, "panic in connection writer") || !strings.Contains(out, "injected writer panic") ||
		!strings.Contains(out, "goroutine") || !strings.Contains(out, "outbox") {
		t.Errorf("log lacks the panic and its stack:\n%s", out)
	}

	o2.Send(protocol.TextFrame([]byte("still here")))
	o2.Close(protocol.CloseNormal, "")
	if texts, code := readFrames(otherCli); len(texts) != 1 || texts[0] != "still here" || code != protocol.CloseNormal {
		t.Errorf("other connection got %q, close %d", texts, code)
	}
}

// logBuffer is a log sink that a test reads while writers log.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// BenchmarkOutbox sends one 130-byte frame to each of 100 loopback sockets per
// op (a broadcast of one message to a room of 100); readers drain in the background.
func BenchmarkOutbox(b *testing.B) {
	const conns = 100
	frame := protocol.TextFrame(make([]byte, 128))
	boxes, done := broadcastRig(b, conns)
	b.ReportAllocs()
	b.SetBytes(int64(len(frame) * conns))
	start := processCPU()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, o := range boxes {
			if !o.Send(frame) {
				b.Fatal("queue full")
			}
		}
	}
	done()
	b.ReportMetric(float64(processCPU()-start)/float64(b.N*conns), "cpu-ns/frame")
}

// processCPU is the user + system time of this process so far: the CPU a
// benchmark costs, whatever else the machine is doing.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkOutboxPaced broadcasts one frame to 100 sockets every 500 µs — a busy
// room below saturation, where writes cannot batch — and reports the process's
// CPU time per delivered frame (readers included; compare runs, not absolutes).
func BenchmarkOutboxPaced(b *testing.B) {
	const conns = 100
	frame := protocol.TextFrame(make([]byte, 128))
	boxes, done := broadcastRig(b, conns)
	b.ReportAllocs()
	start := processCPU()
	b.ResetTimer()
	tick := time.NewTicker(500 * time.Microsecond)
	defer tick.Stop()
	for i := 0; i < b.N; i++ {
		<-tick.C
		for _, o := range boxes {
			if !o.Send(frame) {
				b.Fatal("queue full")
			}
		}
	}
	done()
	b.ReportMetric(float64(processCPU()-start)/float64(b.N*conns), "cpu-ns/frame")
}

// BenchmarkOutboxQuiet is many small rooms: every 500 µs one frame to the 10
// members of the next of 20 rooms (200 sockets), so each socket gets a frame
// every 10 ms and every frame finds its outbox idle. CPU per delivered frame.
func BenchmarkOutboxQuiet(b *testing.B) {
	const rooms, members = 20, 10
	frame := protocol.TextFrame(make([]byte, 128))
	boxes, done := broadcastRig(b, rooms*members)
	b.ReportAllocs()
	start := processCPU()
	b.ResetTimer()
	tick := time.NewTicker(500 * time.Microsecond)
	defer tick.Stop()
	for i := 0; i < b.N; i++ {
		<-tick.C
		for _, o := range boxes[i%rooms*members:][:members] {
			if !o.Send(frame) {
				b.Fatal("queue full")
			}
		}
	}
	done()
	b.ReportMetric(float64(processCPU()-start)/float64(b.N*members), "cpu-ns/frame")
}

// broadcastRig opens conns loopback sockets with an outbox each and readers
// that drain them; done closes the outboxes and waits until all was read.
func broadcastRig(b *testing.B, conns int) (boxes []*outbox, done func()) {
	var readers sync.WaitGroup
	for i := 0; i < conns; i++ {
		srv, cli := tcpPair(b, 0)
		o, _ := newTestOutbox(srv, 1<<20)
		boxes = append(boxes, o)
		readers.Add(1)
		go func() { defer readers.Done(); _, _ = io.Copy(io.Discard, cli) }()
	}
	return boxes, func() {
		for _, o := range boxes {
			o.Close(protocol.CloseNormal, "")
		}
		readers.Wait()
	}
}
