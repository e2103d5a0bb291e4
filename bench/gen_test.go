package bench

import (
	"context"
	"testing"
	"time"
)

func TestGeneratorAgainstCoalesceBaseline(t *testing.T) {
	for _, mode := range []string{ModeCoalesce, ModeNaive} {
		t.Run(mode, func(t *testing.T) {
			b, err := StartBaseline(BaselineOptions{Mode: mode})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			ctx := context.Background()
			g, err := Open(ctx, Options{Server: b.URL, Conns: 20, Users: 5, SrcIPs: 2})
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			if g.Setup.Conns != 20 {
				t.Fatalf("ready connections = %d, want 20 (%s)", g.Setup.Conns, g.Setup.FirstError)
			}
			for range 2 { // ids continue across steps
				r := g.Step(ctx, StepOptions{Senders: 4, Rate: 400, Size: 100, Duration: 300 * time.Millisecond, Drain: 5 * time.Second})
				if r.Sent == 0 {
					t.Fatalf("nothing sent: %+v", r)
				}
				if r.DeliveryRatio != 1 || !r.Lossless() {
					t.Fatalf("delivery ratio %.4f, gaps %d dups %d out-of-order %d closed %d, want all delivered once in order",
						r.DeliveryRatio, r.Gaps, r.Dups, r.OutOfOrder, r.Closed)
				}
				if r.Expected != r.Sent*20 {
					t.Fatalf("expected %d deliveries for %d messages to 20 members", r.Expected, r.Sent)
				}
			}
		})
	}
}
