package media

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Defaults of the upload limits that protect the disk.
const (
	DefaultMinFreeDisk = 1 << 30 // uploads stop when the media file system has less free
	DefaultQuotaBytes  = 200 << 20
	DefaultQuotaPer    = 24 * time.Hour
)

// Quota is how many bytes one user may upload in any window of Per.
// The zero value means the default, 200MiB/24h.
type Quota struct {
	Bytes int64
	Per   time.Duration
	Off   bool // no quota
}

// ParseQuota reads SIZE/DURATION, e.g. 200MiB/24h or 1GB/168h, or "off".
func ParseQuota(s string) (Quota, error) {
	if strings.EqualFold(strings.TrimSpace(s), "off") {
		return Quota{Off: true}, nil
	}
	size, per, ok := strings.Cut(s, "/")
	n, err := ParseSize(size)
	d, derr := time.ParseDuration(strings.TrimSpace(per))
	if !ok || err != nil || n <= 0 || derr != nil || d <= 0 {
		return Quota{}, fmt.Errorf("quota %q: want SIZE/DURATION like 200MiB/24h, or off", s)
	}
	return Quota{Bytes: n, Per: d}, nil
}

func (q Quota) String() string {
	if q.Off {
		return "off"
	}
	q = q.withDefaults()
	return FormatSize(q.Bytes) + "/" + shortDuration(q.Per)
}

func (q Quota) withDefaults() Quota {
	if !q.Off && (q.Bytes <= 0 || q.Per <= 0) {
		return Quota{Bytes: DefaultQuotaBytes, Per: DefaultQuotaPer}
	}
	return q
}

// shortDuration drops the zero minutes and seconds that time.Duration prints: 24h, not 24h0m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
}

// ParseSize reads a byte count with an optional unit: 1048576, 10MB, 1.5GiB, 200 MiB.
// KB, MB, GB and TB are powers of 1000, KiB, MiB, GiB and TiB powers of 1024; case does
// not matter. Fractions are rounded to the nearest byte.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i < 0 {
		i = len(t)
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	mult, ok := sizeUnits[unit]
	if !ok || num == "" || num == "." {
		return 0, fmt.Errorf("size %q: want a number with an optional unit B, KB, MB, GB, TB, KiB, MiB, GiB or TiB, like 10MiB", s)
	}
	if !strings.Contains(num, ".") {
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil || n > math.MaxInt64/mult {
			return 0, fmt.Errorf("size %q: too large", s)
		}
		return n * mult, nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: want a number with an optional unit B, KB, MB, GB, TB, KiB, MiB, GiB or TiB, like 10MiB", s)
	}
	f = math.Round(f * float64(mult))
	if f >= math.MaxInt64 {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	return int64(f), nil
}

// FormatSize writes n in the largest binary unit that holds it exactly (10MiB, 1GiB),
// else in bytes (1500B); ParseSize reads it back.
func FormatSize(n int64) string {
	for _, u := range []struct {
		name string
		size int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n != 0 && n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

// humanSize is n for people, in the largest unit under 1024 of it: 200MiB, 3.2MiB, 980B.
func humanSize(n int64) string {
	if n < 1<<10 {
		return strconv.FormatInt(n, 10) + "B"
	}
	f, unit := float64(n)/(1<<10), "KiB"
	for _, u := range []string{"MiB", "GiB", "TiB"} {
		if f < 1<<10 {
			break
		}
		f, unit = f/(1<<10), u
	}
	if f == math.Trunc(f) {
		return strconv.FormatFloat(f, 'f', 0, 64) + unit
	}
	return strconv.FormatFloat(f, 'f', 1, 64) + unit
}
