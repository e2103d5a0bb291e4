package media

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64
	}{
		{"0", 0},
		{"1024", 1024},
		{"7B", 7},
		{" 7 b ", 7},
		{"10KB", 10_000},
		{"10MB", 10_000_000},
		{"10mb", 10_000_000},
		{"3GB", 3_000_000_000},
		{"2TB", 2_000_000_000_000},
		{"1KiB", 1 << 10},
		{"200MiB", 200 << 20},
		{"200 MiB", 200 << 20},
		{"1GiB", 1 << 30},
		{"1gib", 1 << 30},
		{"8TiB", 8 << 40},
		{"1.5GiB", 3 << 29},
		{"0.5KB", 500},
		{"1.0005KB", 1001}, // rounded to the nearest byte
		{".5KiB", 512},
		{"9223372036854775807", math.MaxInt64},
		{"8388607TiB", 8388607 << 40},
	} {
		got, err := ParseSize(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{
		"", " ", "MiB", "-1", "-1MiB", "+1MiB", "1.2.3MB", "10XB", "10 M", "1e3", "0x10", ".", ".MiB",
		"10MiBs", "10 MiB 2", "1,5MB", "1..5MB",
	} {
		if got, err := ParseSize(in); err == nil || !strings.Contains(err.Error(), "want a number with an optional unit") {
			t.Errorf("ParseSize(%q) = %d, %v; want an error naming the form", in, got, err)
		}
	}
	for _, in := range []string{
		"9223372036854775808", "8388608TiB", "99999999999999999999.5TiB", "9223372036854775808.0", "8388608.0TiB",
		"9007199254740993KiB",
	} {
		if got, err := ParseSize(in); err == nil || !strings.Contains(err.Error(), "too large") {
			t.Errorf("ParseSize(%q) = %d, %v; want too large", in, got, err)
		}
	}
}

func TestFormatSize(t *testing.T) {
	for _, tt := range []struct {
		n    int64
		want string
	}{
		{0, "0B"}, {1, "1B"}, {1000, "1000B"}, {1023, "1023B"}, {1024, "1KiB"}, {1500, "1500B"},
		{1536, "1536B"}, {10 << 20, "10MiB"}, {200 << 20, "200MiB"}, {1 << 30, "1GiB"},
		{1<<30 + 1, "1073741825B"}, {3 << 40, "3TiB"}, {1 << 50, "1024TiB"}, {-1 << 20, "-1MiB"},
	} {
		if got := FormatSize(tt.n); got != tt.want {
			t.Errorf("FormatSize(%d) = %q, want %q", tt.n, got, tt.want)
		}
		if tt.n >= 0 {
			if back, err := ParseSize(FormatSize(tt.n)); err != nil || back != tt.n {
				t.Errorf("ParseSize(FormatSize(%d)) = %d, %v", tt.n, back, err)
			}
		}
	}
}

func TestHumanSize(t *testing.T) {
	for _, tt := range []struct {
		n    int64
		want string
	}{
		{0, "0B"}, {1023, "1023B"}, {1024, "1KiB"}, {1536, "1.5KiB"}, {1<<20 - 1, "1024.0KiB"},
		{1 << 20, "1MiB"}, {3355443, "3.2MiB"}, {200 << 20, "200MiB"}, {3 << 29, "1.5GiB"},
		{5 << 40, "5TiB"}, {1 << 50, "1024TiB"},
	} {
		if got := humanSize(tt.n); got != tt.want {
			t.Errorf("humanSize(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

func TestParseQuota(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Quota
		str  string
	}{
		{"200MiB/24h", Quota{Bytes: 200 << 20, Per: 24 * time.Hour}, "200MiB/24h"},
		{"1GB/168h", Quota{Bytes: 1e9, Per: 168 * time.Hour}, "1000000000B/168h"},
		{"10MiB / 90m", Quota{Bytes: 10 << 20, Per: 90 * time.Minute}, "10MiB/1h30m"},
		{"1/1s", Quota{Bytes: 1, Per: time.Second}, "1B/1s"},
		{"5MiB/10m", Quota{Bytes: 5 << 20, Per: 10 * time.Minute}, "5MiB/10m"},
		{"5MiB/90s", Quota{Bytes: 5 << 20, Per: 90 * time.Second}, "5MiB/1m30s"},
		{"5MiB/1500ms", Quota{Bytes: 5 << 20, Per: 1500 * time.Millisecond}, "5MiB/1.5s"},
		{"off", Quota{Off: true}, "off"},
		{" OFF ", Quota{Off: true}, "off"},
	} {
		got, err := ParseQuota(tt.in)
		if err != nil || got != tt.want || got.String() != tt.str {
			t.Errorf("ParseQuota(%q) = %+v (%s), %v; want %+v (%s)", tt.in, got, got, err, tt.want, tt.str)
		}
	}
	for _, in := range []string{"", "200MiB", "/24h", "0/24h", "200MiB/0s", "200MiB/-1h", "200MiB/day", "x/1h", "200MiB/24h/1h", "on"} {
		if got, err := ParseQuota(in); err == nil || !strings.Contains(err.Error(), "SIZE/DURATION") {
			t.Errorf("ParseQuota(%q) = %+v, %v; want an error naming the form", in, got, err)
		}
	}
	// The zero value, or one half missing, is the default.
	for _, q := range []Quota{{}, {Bytes: 5}, {Per: time.Hour}, {Bytes: -1, Per: time.Hour}} {
		if got := q.withDefaults(); got != (Quota{Bytes: DefaultQuotaBytes, Per: DefaultQuotaPer}) || q.String() != "200MiB/24h" {
			t.Errorf("%+v with defaults = %+v (%s)", q, got, q)
		}
	}
	if q := (Quota{Off: true, Bytes: 5, Per: time.Hour}); q.withDefaults() != q {
		t.Errorf("Off lost its setting: %+v", q.withDefaults())
	}
}
