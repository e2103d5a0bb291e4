package transport

import (
	"testing"
	"time"

	"github.com/pandachat/pandachat/protocol"
)

// More than maxControlFrames control frames within controlWindow are refused,
// at any time of the clock; the (maxControlFrames+1)th exactly a window after
// the first is not. After a long paced run, a burst is refused as before.
func TestWireControlWindowEdges(t *testing.T) {
	ping := clientFrame(0x89, nil)
	start := time.Hour // not zero: the window is measured from the first frame's time
	for _, tc := range []struct {
		last  time.Duration // when the (maxControlFrames+1)th comes, after the first
		code  int
		paced int // paced frames before the burst
	}{
		{controlWindow - time.Nanosecond, protocol.ClosePolicy, 0},
		{controlWindow, 0, 0},
		{controlWindow - time.Nanosecond, protocol.ClosePolicy, 3 * maxControlFrames},
	} {
		clock := start
		p := newWireParser(1 << 10)
		p.now = func() time.Duration { return clock }
		for range tc.paced {
			if _, code, reason := p.feed(ping); code != 0 {
				t.Fatalf("paced frame refused: %s", reason)
			}
			clock += controlWindow
		}
		first := clock
		for i := range maxControlFrames {
			if _, code, reason := p.feed(ping); code != 0 {
				t.Fatalf("frame %d of the burst refused: %s", i+1, reason)
			}
		}
		clock = first + tc.last
		if _, code, _ := p.feed(ping); code != tc.code {
			t.Errorf("after %d paced, frame %d %s after the first: code %d, want %d", tc.paced, maxControlFrames+1, tc.last, code, tc.code)
		}
	}
}
