package transport

import (
	"github.com/pandachat/pandachat/protocol"
	"net"
	"sync"
	"time"
)

// outbox is a connection's bounded outbound queue. Actors add whole frames
// without blocking; one writer goroutine, started only while there is work,
// drains everything queued into a single Write. The socket's write lock keeps
// whole frames from interleaving with the control frames gws writes itself.
type outbox struct {
	conn         net.Conn
	closeFn      func(code int, reason string) // writes the close frame and closes the socket
	maxFrames    int
	maxBytes     int
	writeTimeout time.Duration
	linger       time.Duration

	mu      sync.Mutex
	q       [][]byte
	spare   [][]byte
	qBytes  int
	running bool // a writer goroutine exists
	waiting bool // it is parked on wake
	wake    chan struct{}
	closing bool
	code    int
	reason  string
	dead    bool // the socket is gone; drop everything
}

// Send queues frames, all or none; false when the queue is full or the connection is closing.
func (o *outbox) Send(frames ...[]byte) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closing || o.dead {
		return false
	}
	n := 0
	for _, f := range frames {
		n += len(f)
	}
	if len(o.q)+len(frames) > o.maxFrames || o.qBytes+n > o.maxBytes {
		return false
	}
	o.q = append(o.q, frames...)
	o.qBytes += n
	o.kick()
	return true
}

// writeChunk is how much is written under one deadline: the timeout then
// measures a peer's progress, not the size of a replay.
const writeChunk = 64 << 10

// write writes b whole; a peer that takes no chunk within writeTimeout is cut off.
func (o *outbox) write(b []byte) error {
	for len(b) > 0 {
		n := min(len(b), writeChunk)
		_ = o.conn.SetWriteDeadline(time.Now().Add(o.writeTimeout))
		if _, err := o.conn.Write(b[:n]); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// Close sends a close frame behind what is queued; the writer then closes the socket.
func (o *outbox) Close(code int, reason string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closing || o.dead {
		return
	}
	o.closing, o.code, o.reason = true, code, reason
	if code == protocol.CloseSlowConsumer { // the peer reads nothing: close behind what is already written
		clear(o.q)
		o.q, o.qBytes = o.q[:0], 0
	}
	o.kick()
}

// gone marks the socket closed (called once gws reports the close).
func (o *outbox) gone() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.dead = true
	o.q, o.spare = nil, nil
	o.kick()
}

// kick starts or wakes the writer. Lock must be held.
func (o *outbox) kick() {
	if !o.running {
		o.running = true
		go o.run()
		return
	}
	if o.waiting {
		o.waiting = false
		select {
		case o.wake <- struct{}{}:
		default:
		}
	}
}

func (o *outbox) run() {
	var (
		buf     []byte
		timer   *time.Timer
		batches int // written in this run of the writer
	)
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	// An idle socket must not keep a stale deadline: gws writes its own close
	// frames (1009, 1007, close echoes) later, and they would fail at once.
	defer func() { _ = o.conn.SetWriteDeadline(time.Time{}) }()
	for {
		o.mu.Lock()
		if o.dead {
			o.running = false
			o.mu.Unlock()
			return
		}
		if len(o.q) == 0 {
			if o.closing {
				code, reason := o.code, o.reason
				o.dead = true
				o.running = false
				o.mu.Unlock()
				_ = o.conn.SetWriteDeadline(time.Now().Add(o.writeTimeout))
				o.closeFn(code, reason)
				return
			}
			// A one-off write (a join answer, a quiet room) ends the writer at once;
			// a writer that found more work lingers, so a busy room keeps it warm
			// while an idle connection holds no goroutine.
			if batches < 2 {
				o.running = false
				o.q, o.spare = nil, nil
				o.mu.Unlock()
				return
			}
			o.waiting = true
			if o.wake == nil { // only lingering writers need a wake-up channel
				o.wake = make(chan struct{}, 1)
			}
			wake := o.wake
			o.mu.Unlock()
			if timer == nil {
				timer = time.NewTimer(o.linger)
			} else {
				timer.Reset(o.linger)
			}
			select {
			case <-wake:
				continue
			case <-timer.C:
			}
			o.mu.Lock()
			if len(o.q) == 0 && !o.closing && !o.dead {
				o.running, o.waiting = false, false
				o.spare, o.q, o.wake = nil, nil, nil // give everything back while idle
				o.mu.Unlock()
				return
			}
			o.waiting = false
			o.mu.Unlock()
			continue
		}
		batches++
		batch := o.q
		o.q, o.spare = o.spare[:0], nil
		o.qBytes = 0
		o.mu.Unlock()

		var out []byte
		if len(batch) == 1 {
			out = batch[0]
		} else {
			buf = buf[:0]
			for _, f := range batch {
				buf = append(buf, f...)
			}
			out = buf
		}
		err := o.write(out)
		clear(batch)
		if cap(buf) > 1<<20 {
			buf = nil // don't keep a replay-sized buffer around
		}
		o.mu.Lock()
		if o.spare == nil {
			o.spare = batch[:0]
		}
		if err != nil {
			o.dead, o.running = true, false
			o.q = nil
			o.mu.Unlock()
			_ = o.conn.Close() // gws's read loop sees it and reports the close
			return
		}
		o.mu.Unlock()
	}
}
