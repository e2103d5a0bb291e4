package actors

import "sync"

// gate bounds the frames a connection has in flight. The socket's read loop
// takes a credit per frame and waits when there is none, so TCP pushes back on
// a fast sender; the conn actor or the room gives the credit back when the
// frame is done with. Closing the gate frees a waiting read loop. The channel
// a waiting read loop sleeps on is made the first time it has to wait: an idle
// connection's gate is a few words.
type gate struct {
	mu     sync.Mutex
	n, max int
	closed bool
	wake   chan struct{} // signalled by release, closed by close
}

func newGate(n int) *gate { return &gate{max: n} }

// acquire takes a credit, waiting for one; false once the gate is closed. One
// goroutine (the socket's read loop) calls it.
func (g *gate) acquire() bool {
	g.mu.Lock()
	for {
		switch {
		case g.closed:
			g.mu.Unlock()
			return false
		case g.n < g.max:
			g.n++
			g.mu.Unlock()
			return true
		}
		if g.wake == nil {
			g.wake = make(chan struct{}, 1)
		}
		wake := g.wake
		g.mu.Unlock()
		<-wake
		g.mu.Lock()
	}
}

// release gives a credit back.
func (g *gate) release() {
	g.mu.Lock()
	if g.n > 0 {
		g.n--
	}
	if g.wake != nil && !g.closed {
		select {
		case g.wake <- struct{}{}:
		default: // a wake-up is pending already
		}
	}
	g.mu.Unlock()
}

func (g *gate) close() {
	g.mu.Lock()
	if !g.closed {
		g.closed = true
		if g.wake != nil {
			close(g.wake)
		}
	}
	g.mu.Unlock()
}

// inFlight is how many credits are taken (tests).
func (g *gate) inFlight() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.n
}
