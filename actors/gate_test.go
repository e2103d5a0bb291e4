package actors

import (
	"testing"
	"time"
)

// The gate gives max credits; the next acquire waits until one comes back,
// and a close frees it with false. Releases after the close are harmless.
func TestGate(t *testing.T) {
	g := newGate(2)
	if !g.acquire() || !g.acquire() || g.inFlight() != 2 {
		t.Fatalf("two credits: in flight %d", g.inFlight())
	}
	got := make(chan bool)
	go func() { got <- g.acquire() }()
	select {
	case ok := <-got:
		t.Fatalf("a third acquire returned %v without a credit", ok)
	case <-time.After(50 * time.Millisecond):
	}
	g.release()
	if ok := <-got; !ok || g.inFlight() != 2 {
		t.Fatalf("after a release: %v, in flight %d", ok, g.inFlight())
	}

	go func() { got <- g.acquire() }() // waits again
	time.Sleep(20 * time.Millisecond)
	g.close()
	if ok := <-got; ok {
		t.Fatal("a waiting acquire got a credit from a close")
	}
	g.release()
	g.release()
	g.release() // more than were taken: no credit below zero
	if g.acquire() || g.inFlight() != 0 {
		t.Fatalf("after the close: acquire succeeded or %d in flight", g.inFlight())
	}
	g.close() // twice is fine
}
