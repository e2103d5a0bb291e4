package transport

import (
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pandachat/pandachat/protocol"
)

// outbox is a connection's bounded outbound queue. Actors add whole frames
// without blocking; one writer goroutine, started only while there is work,
// writes everything queued in one batch through the connection's write lock
// (wireConn.writeFrames). The queue holds references to frames shared with
// every other member's queue, never copies: a frame's bytes are read, never written.
//
// With direct set, a Send to a quiet outbox (no writer, nothing queued, no
// direct write within directGap) first writes on the caller's goroutine what
// the socket takes without waiting; only a rest starts the writer. A quiet
// connection's frame then costs one system call instead of a goroutine's
// start, scheduling and end as well. A busy connection keeps the writer, which
// coalesces what comes while it writes.
type outbox struct {
	conn      *wireConn
	closeFn   func(code int, reason string) // writes the close frame and closes the socket
	maxFrames int
	maxBytes  int
	linger    time.Duration
	log       *slog.Logger
	direct    bool // try the socket at once when idle (a kernel socket with writev)

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
	dead    bool      // the socket is gone; drop everything
	half    bool      // a direct write left a frame half-written: the writer finishes it first
	wrote   time.Time // the last direct write
}

// directGap is how long after a direct write the next one waits: frames that
// come closer go to the writer, which batches them.
const directGap = time.Millisecond

// Send queues frames, all or none. It says false only when the queue is full:
// the caller then counts a slow consumer and closes the connection. A
// connection that is closing or gone takes nothing and says true, because its
// close is already on the way to everyone who tracks it.
func (o *outbox) Send(frames ...[]byte) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closing || o.dead {
		return true
	}
	n := 0
	for _, f := range frames {
		n += len(f)
	}
	if len(o.q)+len(frames) > o.maxFrames || o.qBytes+n > o.maxBytes {
		return false
	}
	if o.direct && !o.running && len(o.q) == 0 && testHookWrite.Load() == nil {
		if now := time.Now(); now.Sub(o.wrote) >= directGap {
			o.wrote = now
			o.sendNow(frames)
			return true
		}
	}
	o.q = append(o.q, frames...)
	o.qBytes += n
	o.kick()
	return true
}

// sendNow writes frames on the caller's goroutine as far as the socket takes
// them at once; the rest goes to a writer, ahead of whatever was queued
// meanwhile. Lock must be held; it is released during the write, while
// running keeps other senders queueing and the writer unstarted.
func (o *outbox) sendNow(frames [][]byte) {
	o.running = true
	o.mu.Unlock()
	rest, half, err := o.conn.tryWriteFrames(frames)
	o.mu.Lock()
	o.running = false
	switch {
	case o.dead:
		return
	case err != nil:
		o.dead, o.q = true, nil
		o.mu.Unlock()
		_ = o.conn.Close() // gws's read loop sees it and reports the close
		o.mu.Lock()
		return
	}
	o.half = o.half || half
	if len(rest) > 0 && !(o.closing && o.code == protocol.CloseSlowConsumer) {
		q := make([][]byte, 0, len(rest)+len(o.q))
		q = append(append(q, rest...), o.q...)
		o.q = q
		for _, f := range rest {
			o.qBytes += len(f)
		}
	}
	if len(o.q) > 0 || o.half || o.closing {
		o.kick()
	}
}

// Close queues last and a close frame behind what is queued, in one step; the
// writer then closes the socket.
func (o *outbox) Close(code int, reason string, last ...[]byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closing || o.dead {
		return
	}
	o.closing, o.code, o.reason = true, code, reason
	if code == protocol.CloseSlowConsumer { // the peer reads nothing: close behind what is already written
		clear(o.q)
		o.q, o.qBytes = o.q[:0], 0
	} else {
		// Past the bounds: last is one short frame that says why, and nothing follows it.
		o.q = append(o.q, last...)
		for _, f := range last {
			o.qBytes += len(f)
		}
	}
	o.kick()
}

// gone marks the socket closed (called once gws reports the close).
func (o *outbox) gone() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.dead = true
	o.q, o.spare = nil, nil
	if o.running {
		o.kick() // a lingering writer wakes up and ends
	}
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

// testHookWrite, when set, sees every batch before it is written (tests inject panics).
var testHookWrite atomic.Pointer[func(batch [][]byte)]

func (o *outbox) run() {
	var (
		timer   *time.Timer
		batches int // written in this run of the writer
	)
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	defer o.recover()
	for {
		o.mu.Lock()
		if o.dead {
			o.running = false
			o.mu.Unlock()
			return
		}
		if len(o.q) == 0 && !o.half {
			if o.closing {
				code, reason := o.code, o.reason
				o.dead = true
				o.running = false
				o.mu.Unlock()
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
		o.qBytes, o.half = 0, false // writeFrames finishes a half-written frame first
		o.mu.Unlock()

		if h := testHookWrite.Load(); h != nil {
			(*h)(batch)
		}
		// Every write sets its own deadline under the write lock, so nothing is
		// left to clear when the writer ends: a later writer, or gws writing a
		// close frame, never inherits a deadline it did not set.
		err := o.conn.writeFrames(batch)
		clear(batch) // drop the references to the shared frames
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

// recover stops a panic in the writer: it is logged with its stack and closes
// only this connection (gws's read loop then reports the close).
func (o *outbox) recover() {
	p := recover()
	if p == nil {
		return
	}
	o.log.Error("panic in connection writer", "panic", p, "stack", string(debug.Stack()))
	o.mu.Lock()
	o.dead, o.running = true, false
	o.q, o.spare = nil, nil
	o.mu.Unlock()
	_ = o.conn.Close()
}
