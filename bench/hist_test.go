package bench

import (
	"testing"
	"time"
)

func TestHistogramPercentiles(t *testing.T) {
	var h Histogram
	for v := 1; v <= 10000; v++ {
		h.Record(time.Duration(v) * time.Microsecond)
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{
		{50, 5000 * time.Microsecond},
		{90, 9000 * time.Microsecond},
		{99, 9900 * time.Microsecond},
		{100, 10000 * time.Microsecond},
	} {
		got := h.Percentile(tc.p)
		if got < tc.want || float64(got) > float64(tc.want)*1.02 {
			t.Errorf("p%v = %v, want %v within +2%%", tc.p, got, tc.want)
		}
	}
	if h.Max() != 10*time.Millisecond || h.Count() != 10000 {
		t.Errorf("max %v count %d", h.Max(), h.Count())
	}
	if m := h.Mean(); m < 5000*time.Microsecond || m > 5001*time.Microsecond {
		t.Errorf("mean %v", m)
	}
}

func TestHistogramSmallValuesAreExact(t *testing.T) {
	var h Histogram
	for _, v := range []int{3, 3, 3, 7, 100} {
		h.Record(time.Duration(v) * time.Microsecond)
	}
	h.Record(-time.Second) // clock skew: counts as zero
	if got := h.Percentile(50); got != 3*time.Microsecond {
		t.Errorf("p50 = %v, want 3µs", got)
	}
	if got := h.Percentile(10); got != 0 {
		t.Errorf("p10 = %v, want 0", got)
	}
	if got := h.Percentile(99); got != 100*time.Microsecond {
		t.Errorf("p99 = %v, want 100µs", got)
	}
}

func TestHistogramEmptyAndMerge(t *testing.T) {
	var a, b, c Histogram
	if a.Percentile(99) != 0 || a.Mean() != 0 || a.Max() != 0 {
		t.Fatal("empty histogram should report zeros")
	}
	a.Record(time.Millisecond)
	b.Record(time.Second)
	b.Record(time.Hour)
	a.Merge(&b)
	if a.Count() != 3 || a.Max() != time.Hour {
		t.Fatalf("merged count %d max %v", a.Count(), a.Max())
	}
	c.AddBuckets(a.Buckets())
	// Buckets keep upper bounds only, so the merged maximum may be up to one bucket (1.6 %) higher.
	if c.Count() != 3 || c.Percentile(50) != a.Percentile(50) || float64(c.Percentile(100)) > float64(a.Percentile(100))*1.016 {
		t.Fatalf("buckets round trip: %v/%v vs %v/%v", c.Percentile(50), c.Percentile(100), a.Percentile(50), a.Percentile(100))
	}
	a.Reset()
	if a.Count() != 0 || a.Percentile(50) != 0 {
		t.Fatal("reset histogram not empty")
	}
}

func TestHistogramBucketBounds(t *testing.T) {
	prev := -1
	for _, v := range []uint64{0, 1, 127, 128, 129, 255, 256, 1000, 1 << 20, 123456789, 1 << 40} {
		i := histIndex(v)
		if i < prev {
			t.Fatalf("index not monotonic at %d", v)
		}
		prev = i
		if up := histUpper(i); up < v || float64(up-v) > float64(v)*0.016+1 {
			t.Errorf("value %d: bucket %d upper %d", v, i, up)
		}
		if i > 0 && histUpper(i-1) >= v {
			t.Errorf("value %d also fits bucket %d", v, i-1)
		}
	}
	if histIndex(1<<62) != histBuckets-1 {
		t.Error("huge values must land in the last bucket")
	}
}

func TestHistogramRecordDoesNotAllocate(t *testing.T) {
	var h Histogram
	if n := testing.AllocsPerRun(1000, func() { h.Record(1234 * time.Microsecond) }); n != 0 {
		t.Fatalf("Record allocates %v times", n)
	}
}

func BenchmarkHistogramRecord(b *testing.B) {
	var h Histogram
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		h.Record(time.Duration(i%100000) * time.Microsecond)
	}
}
