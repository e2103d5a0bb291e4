package transport

import (
	"bytes"
	"testing"
)

// The queue takes frames up to exactly maxFrames and maxBytes, all of a
// Send's frames or none; a writer that is busy (here: marked running, so none
// drains the queue) leaves the queue as the limits made it.
func TestOutboxLimitsAreExact(t *testing.T) {
	srv, _ := tcpPair(t, 0)
	frame := func(n int) []byte { return bytes.Repeat([]byte("x"), n) }

	o, _ := newTestOutbox(srv, 3)
	o.running = true // a writer is "busy": nothing is written or dequeued
	for i, tc := range []struct {
		frames [][]byte
		ok     bool
	}{
		{[][]byte{frame(1), frame(1)}, true},  // 2 of 3
		{[][]byte{frame(1), frame(1)}, false}, // 4: all or none
		{[][]byte{frame(1)}, true},            // 3: exactly full
		{[][]byte{frame(1)}, false},
	} {
		if got := o.Send(tc.frames...); got != tc.ok {
			t.Errorf("frames: Send %d = %v, want %v (queued %d)", i, got, tc.ok, len(o.q))
		}
	}

	o, _ = newTestOutbox(srv, 100)
	o.maxBytes = 100
	o.running = true
	for i, tc := range []struct {
		size int
		ok   bool
	}{{60, true}, {41, false}, {40, true}, {1, false}} {
		if got := o.Send(frame(tc.size)); got != tc.ok {
			t.Errorf("bytes: Send %d of %d bytes = %v, want %v (queued %d bytes)", i, tc.size, got, tc.ok, o.qBytes)
		}
	}
	if o.qBytes != 100 || len(o.q) != 2 {
		t.Errorf("queued %d frames, %d bytes; want 2, 100", len(o.q), o.qBytes)
	}
}
