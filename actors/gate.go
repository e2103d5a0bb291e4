package actors

import "sync"

// gate bounds the frames a connection has in flight. The socket's read loop
// takes a credit per frame and waits when there is none, so TCP pushes back on
// a fast sender; the conn actor or the room gives the credit back when the
// frame is done with. Closing the gate frees a waiting read loop.
type gate struct {
	credits chan struct{}
	closed  chan struct{}
	once    sync.Once
}

func newGate(n int) *gate {
	return &gate{credits: make(chan struct{}, n), closed: make(chan struct{})}
}

// acquire takes a credit, waiting for one; false once the gate is closed.
func (g *gate) acquire() bool {
	select {
	case <-g.closed:
		return false
	default:
	}
	select {
	case g.credits <- struct{}{}:
		return true
	default:
	}
	select {
	case g.credits <- struct{}{}:
		return true
	case <-g.closed:
		return false
	}
}

// release gives a credit back.
func (g *gate) release() {
	select {
	case <-g.credits:
	default:
	}
}

func (g *gate) close() { g.once.Do(func() { close(g.closed) }) }

// inFlight is how many credits are taken (tests).
func (g *gate) inFlight() int { return len(g.credits) }
