package bench

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// Histogram records durations in fixed log-linear buckets (about 1.6 %
// relative precision, 1 µs to hours), HDR style: recording is one atomic
// add per bucket and never allocates, so receivers on many goroutines can
// share one.
type Histogram struct {
	counts [histBuckets]atomic.Uint64
	count  atomic.Uint64
	sum    atomic.Uint64 // µs
	max    atomic.Uint64 // µs
}

const (
	histSubBits = 7                      // 128 linear sub-buckets below the first doubling
	histHalf    = 1 << (histSubBits - 1) // 64 sub-buckets per doubling above
	histMaxExp  = 36                     // values up to 2^42 µs; larger ones are clamped
	histBuckets = (histMaxExp + 2) * histHalf
)

func histIndex(us uint64) int {
	if us < 1<<histSubBits {
		return int(us)
	}
	e := bits.Len64(us) - histSubBits
	if e > histMaxExp {
		return histBuckets - 1
	}
	return e*histHalf + int(us>>uint(e))
}

// histUpper is the highest value (µs) that lands in bucket i.
func histUpper(i int) uint64 {
	if i < 1<<histSubBits {
		return uint64(i)
	}
	e := i/histHalf - 1
	m := uint64(i%histHalf + histHalf)
	return (m+1)<<uint(e) - 1
}

// Record adds one duration; negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	us := uint64(0)
	if d > 0 {
		us = uint64(d / time.Microsecond)
	}
	h.counts[histIndex(us)].Add(1)
	h.count.Add(1)
	h.sum.Add(us)
	for {
		m := h.max.Load()
		if us <= m || h.max.CompareAndSwap(m, us) {
			break
		}
	}
}

// Count is the number of recorded values.
func (h *Histogram) Count() uint64 { return h.count.Load() }

// Max is the largest recorded value.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max.Load()) * time.Microsecond }

// Mean is the average of the recorded values.
func (h *Histogram) Mean() time.Duration {
	n := h.count.Load()
	if n == 0 {
		return 0
	}
	return time.Duration(h.sum.Load()/n) * time.Microsecond
}

// Percentile returns the smallest bucket bound below which at least p percent
// (0..100) of the values lie, capped at the maximum seen.
func (h *Histogram) Percentile(p float64) time.Duration {
	n := h.count.Load()
	if n == 0 {
		return 0
	}
	want := uint64(math.Ceil(float64(n) * p / 100))
	if want == 0 {
		want = 1
	}
	var seen uint64
	max := h.max.Load()
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= want {
			return time.Duration(min(histUpper(i), max)) * time.Microsecond
		}
	}
	return time.Duration(max) * time.Microsecond
}

// Merge adds o's values to h.
func (h *Histogram) Merge(o *Histogram) {
	for i := range o.counts {
		if c := o.counts[i].Load(); c != 0 {
			h.counts[i].Add(c)
		}
	}
	h.count.Add(o.count.Load())
	h.sum.Add(o.sum.Load())
	for m := o.max.Load(); ; {
		cur := h.max.Load()
		if m <= cur || h.max.CompareAndSwap(cur, m) {
			break
		}
	}
}

// Reset forgets every value. Not safe while others record.
func (h *Histogram) Reset() {
	for i := range h.counts {
		h.counts[i].Store(0)
	}
	h.count.Store(0)
	h.sum.Store(0)
	h.max.Store(0)
}

// Buckets returns the non-empty buckets as (upper bound µs, count) pairs,
// the form the JSON result carries so that runs of several processes merge.
func (h *Histogram) Buckets() [][2]uint64 {
	var out [][2]uint64
	for i := range h.counts {
		if c := h.counts[i].Load(); c != 0 {
			out = append(out, [2]uint64{histUpper(i), c})
		}
	}
	return out
}

// AddBuckets adds pairs produced by Buckets.
func (h *Histogram) AddBuckets(b [][2]uint64) {
	for _, p := range b {
		h.counts[histIndex(p[0])].Add(p[1])
		h.count.Add(p[1])
		h.sum.Add(p[0] * p[1])
		for {
			m := h.max.Load()
			if p[0] <= m || h.max.CompareAndSwap(m, p[0]) {
				break
			}
		}
	}
}
