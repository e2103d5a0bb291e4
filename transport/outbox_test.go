package transport

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
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

// closeRecorder stands in for gws: it writes a close frame and closes the socket.
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

func newTestOutbox(conn net.Conn, frames int) (*outbox, *closeRecorder) {
	cr := &closeRecorder{conn: conn}
	return &outbox{conn: conn, closeFn: cr.close, maxFrames: frames, maxBytes: 1 << 30,
		writeTimeout: 5 * time.Second, linger: 50 * time.Millisecond}, cr
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

// A peer that reads nothing fills the queue: Send says so and never blocks;
// the close frame then follows what was already written once the peer reads.
func TestOutboxSlowConsumer(t *testing.T) {
	srv, cli := tcpPair(t, 4096)
	o, cr := newTestOutbox(srv, 8)
	frame := protocol.TextFrame(make([]byte, 4000))
	refused := false
	for i := 0; i < 10000 && !refused; i++ {
		refused = !o.Send(frame)
	}
	if !refused {
		t.Fatal("a peer that reads nothing never filled the queue")
	}
	o.Close(protocol.CloseSlowConsumer, "slow consumer")
	if o.Send(frame) {
		t.Error("Send accepted a frame after Close")
	}
	_, code := readFrames(cli)
	if code != protocol.CloseSlowConsumer {
		t.Errorf("close code %d, want 1013", code)
	}
	cr.mu.Lock()
	defer cr.mu.Unlock()
	if cr.code != protocol.CloseSlowConsumer {
		t.Errorf("closeFn got %d", cr.code)
	}
}

// Once the socket is gone nothing is queued and no writer is left behind.
func TestOutboxGone(t *testing.T) {
	srv, _ := tcpPair(t, 0)
	o, _ := newTestOutbox(srv, 16)
	o.gone()
	if o.Send(protocol.TextFrame([]byte("x"))) {
		t.Error("Send accepted a frame for a closed socket")
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.q) != 0 {
		t.Errorf("%d frames queued for a closed socket", len(o.q))
	}
}

// BenchmarkOutbox sends one 130-byte frame to each of 100 loopback sockets per
// op (a broadcast of one message to a room of 100); readers drain in the background.
func BenchmarkOutbox(b *testing.B) {
	const conns = 100
	frame := protocol.TextFrame(make([]byte, 128))
	boxes, done := broadcastRig(b, conns)
	b.ReportAllocs()
	b.SetBytes(int64(len(frame) * conns))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, o := range boxes {
			if !o.Send(frame) {
				b.Fatal("queue full")
			}
		}
	}
	done()
}

// BenchmarkOutboxPaced broadcasts one frame to 100 sockets every 500 µs — a busy
// room below saturation, where writes cannot batch — and reports the process's
// CPU time per delivered frame (readers included; compare runs, not absolutes).
func BenchmarkOutboxPaced(b *testing.B) {
	const conns = 100
	frame := protocol.TextFrame(make([]byte, 128))
	boxes, done := broadcastRig(b, conns)
	cpu := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	b.ReportAllocs()
	start := cpu()
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
	b.ReportMetric(float64(cpu()-start)/float64(b.N*conns), "cpu-ns/frame")
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
