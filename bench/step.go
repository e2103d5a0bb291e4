package bench

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/lxzan/gws"
)

// StepOptions describe one load step on an open connection set.
type StepOptions struct {
	Senders  int           // connections that send (the first ones, spread over the rooms); 0 = one per room
	Rate     float64       // messages per second, all senders together
	Size     int           // content bytes per message (stamp + padding); 0 = 100
	Duration time.Duration // sending time; 0 = 3 s
	Drain    time.Duration // longest wait for the last deliveries after sending; 0 = 2 s
	// Settle > 0 also waits (within Drain) until nothing arrived for this
	// long: a process that receives other processes' messages cannot know
	// how many to expect.
	Settle time.Duration
}

// Latency percentiles in milliseconds.
type Latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

func latencyOf(h *Histogram) Latency {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return Latency{ms(h.Percentile(50)), ms(h.Percentile(90)), ms(h.Percentile(99)), ms(h.Max()), ms(h.Mean())}
}

// StepResult is what one load step measured on the receivers.
type StepResult struct {
	Members          int     `json:"members"` // ready connections at the start
	Senders          int     `json:"senders"`
	Rate             float64 `json:"rate"`             // target messages/s
	TargetDeliveries float64 `json:"targetDeliveries"` // target deliveries/s
	Size             int     `json:"size"`
	Seconds          float64 `json:"seconds"` // first send to last delivery
	Sent             uint64  `json:"sent"`
	SendRate         float64 `json:"sendRate"` // messages/s actually sent
	Delivered        uint64  `json:"delivered"`
	Expected         uint64  `json:"expected"`
	DeliveryRatio    float64 `json:"deliveryRatio"`
	DeliveriesPerSec float64 `json:"deliveriesPerSec"`
	Gaps             uint64  `json:"gaps"`
	Dups             uint64  `json:"dups"`
	OutOfOrder       uint64  `json:"outOfOrder"`
	ErrorFrames      uint64  `json:"errorFrames"`
	SendErrors       uint64  `json:"sendErrors"`
	Closed           uint64  `json:"closed"`
	CloseReasons     string  `json:"closeReasons,omitempty"`
	Latency          Latency `json:"latencyMs"`
	ServerCPUSeconds float64 `json:"serverCPUSeconds,omitempty"`
	DeliveriesPerCPU float64 `json:"deliveriesPerServerCPUSecond,omitempty"`
	ServerRSS        int64   `json:"serverRSS,omitempty"`
	GenCPUSeconds    float64 `json:"generatorCPUSeconds"`
	// Hist is the latency histogram as (upper bound µs, count) pairs, so
	// results of several generator processes can be merged.
	Hist [][2]uint64 `json:"hist,omitempty"`
	// RoomSent and RoomMembers let several processes' expected counts merge.
	RoomSent    []uint64 `json:"roomSent,omitempty"`
	RoomMembers []int    `json:"roomMembers,omitempty"`
}

// Lossless reports whether every message reached every member once, in order.
func (r *StepResult) Lossless() bool {
	return r.Delivered == r.Expected && r.Gaps == 0 && r.Dups == 0 && r.OutOfOrder == 0 && r.Closed == 0 && r.SendErrors == 0
}

func (g *Gen) delivered() (n uint64, last int64) {
	for i := range g.shards {
		n += g.shards[i].n.Load()
		last = max(last, g.shards[i].last.Load())
	}
	return
}

func (g *Gen) mergedHist() *Histogram {
	h := new(Histogram)
	for i := range g.shards {
		h.Merge(&g.shards[i].hist)
	}
	return h
}

// Step sends at the given rate for the given time, waits for the last
// deliveries, and reports what the receivers saw.
func (g *Gen) Step(ctx context.Context, so StepOptions) StepResult {
	if so.Size <= 0 {
		so.Size = 100
	}
	if so.Duration <= 0 {
		so.Duration = 3 * time.Second
	}
	if so.Drain <= 0 {
		so.Drain = 2 * time.Second
	}
	if so.Senders <= 0 {
		so.Senders = g.opt.Rooms
	}
	// Reset the per-step counters; nothing is in flight between steps.
	for i := range g.shards {
		g.shards[i].hist.Reset()
		g.shards[i].n.Store(0)
	}
	for i := range g.sent {
		g.sent[i].Store(0)
	}
	gaps0, dups0, ooo0, err0, closed0, send0 := g.gaps.Load(), g.dups.Load(), g.ooo.Load(), g.errFrames.Load(), g.closedN.Load(), g.sendErrs.Load()
	members := make([]int, g.opt.Rooms)
	var senders []*client
	for _, c := range g.clients {
		if c != nil && c.ready.Load() && !c.dead.Load() {
			members[c.room]++
			if len(senders) < so.Senders {
				senders = append(senders, c)
			}
		}
	}
	res := StepResult{Senders: len(senders), Rate: so.Rate, Size: so.Size}
	for _, m := range members {
		res.Members += m
		res.TargetDeliveries += so.Rate / float64(g.opt.Rooms) * float64(m)
	}
	srv0, _ := g.serverProc()
	gen0, _ := ReadProc(0)

	start := time.Now()
	pacers := min(len(senders), 2)
	var wg sync.WaitGroup
	for p := range pacers {
		var mine []*client
		for j := p; j < len(senders); j += pacers {
			mine = append(mine, senders[j])
		}
		wg.Go(func() { g.pace(ctx, mine, so.Rate/float64(pacers), so.Size, start, so.Duration) })
	}
	stopProgress := g.stepProgress(start)
	wg.Wait()
	sendEnd := time.Now()

	expected := func() uint64 {
		var e uint64
		for r := range g.sent {
			e += g.sent[r].Load() * uint64(members[r])
		}
		return e
	}
	exp := expected()
	for deadline := time.Now().Add(so.Drain); time.Now().Before(deadline) && ctx.Err() == nil; {
		n, last := g.delivered()
		if n >= exp && (so.Settle <= 0 || time.Since(time.Unix(0, last)) >= so.Settle) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	stopProgress()

	n, last := g.delivered()
	for r := range g.sent {
		res.Sent += g.sent[r].Load()
		res.RoomSent = append(res.RoomSent, g.sent[r].Load())
	}
	res.RoomMembers = members
	res.Expected = exp
	res.Delivered = n
	if exp > 0 {
		res.DeliveryRatio = float64(n) / float64(exp)
	}
	res.SendRate = float64(res.Sent) / sendEnd.Sub(start).Seconds()
	end := time.Unix(0, last)
	if last == 0 || end.Before(sendEnd) {
		end = sendEnd
	}
	res.Seconds = end.Sub(start).Seconds()
	res.DeliveriesPerSec = float64(n) / res.Seconds
	res.Gaps = g.gaps.Load() - gaps0
	res.Dups = g.dups.Load() - dups0
	res.OutOfOrder = g.ooo.Load() - ooo0
	res.ErrorFrames = g.errFrames.Load() - err0
	res.SendErrors = g.sendErrs.Load() - send0
	res.Closed = g.closedN.Load() - closed0
	if res.Closed > 0 {
		res.CloseReasons = g.closeReasons()
	}
	h := g.mergedHist()
	res.Latency = latencyOf(h)
	res.Hist = h.Buckets()
	if s, ok := g.serverProc(); ok {
		res.ServerCPUSeconds = s.CPUSeconds - srv0.CPUSeconds
		res.ServerRSS = s.RSS
		if res.ServerCPUSeconds > 0 {
			res.DeliveriesPerCPU = float64(n) / res.ServerCPUSeconds
		}
	}
	if s, err := ReadProc(0); err == nil {
		res.GenCPUSeconds = s.CPUSeconds - gen0.CPUSeconds
	}
	return res
}

func (g *Gen) closeReasons() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []string
	for why, n := range g.closeWhy {
		out = append(out, fmt.Sprintf("%d× %s", n, why))
	}
	sort.Strings(out)
	return strings.Join(out, "; ")
}

// pace sends rate messages per second, round robin over senders, on a fixed
// schedule from start: a sender that falls behind catches up at once, so the
// offered load does not sag when the server is slow to read.
func (g *Gen) pace(ctx context.Context, senders []*client, rate float64, size int, start time.Time, dur time.Duration) {
	if len(senders) == 0 || rate <= 0 {
		return
	}
	buf := make([]byte, 0, size+96)
	var n int64
	k := 0
	for ctx.Err() == nil {
		el := time.Since(start)
		if el >= dur {
			return
		}
		due := int64(el.Seconds() * rate)
		for ; n < due; n++ {
			c := senders[k]
			k = (k + 1) % len(senders)
			if c.dead.Load() {
				continue
			}
			buf = AppendMessage(buf[:0], time.Now().UnixNano(), uint64(c.idx), c.seq.Add(1), size)
			if err := c.conn.WriteMessage(gws.OpcodeText, buf); err != nil {
				g.sendErrs.Add(1)
				continue
			}
			g.sent[c.room].Add(1)
		}
		wait := time.Until(start.Add(time.Duration(float64(n+1) / rate * float64(time.Second))))
		time.Sleep(min(max(wait, 50*time.Microsecond), time.Millisecond))
	}
}

// stepProgress prints one line per second until the returned func is called.
func (g *Gen) stepProgress(start time.Time) func() {
	if g.opt.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var prevSent, prevN uint64
		var prevCPU float64
		prevT := start
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				var sent uint64
				for r := range g.sent {
					sent += g.sent[r].Load()
				}
				n, _ := g.delivered()
				dt := now.Sub(prevT).Seconds()
				line := fmt.Sprintf("[%4.1fs] sent %7.0f/s  delivered %s/s  p99 %s  gaps %d  closed %d",
					now.Sub(start).Seconds(), float64(sent-prevSent)/dt, si(float64(n-prevN)/dt),
					fmtMs(latencyOf(g.mergedHist()).P99), g.gaps.Load(), g.closedN.Load())
				if s, ok := g.serverProc(); ok {
					if prevCPU > 0 {
						line += fmt.Sprintf("  server cpu %3.0f%%", (s.CPUSeconds-prevCPU)/dt*100)
					}
					line += fmt.Sprintf("  rss %s", iec(s.RSS))
					prevCPU = s.CPUSeconds
				}
				fmt.Fprintln(g.opt.Progress, line)
				prevSent, prevN, prevT = sent, n, now
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

func si(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

func fmtMs(ms float64) string {
	if ms >= 100 {
		return fmt.Sprintf("%.0fms", ms)
	}
	return fmt.Sprintf("%.1fms", ms)
}

func iec(b int64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.2fGiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1fMiB", float64(b)/(1<<20))
	}
	return fmt.Sprintf("%.1fKiB", float64(b)/(1<<10))
}
