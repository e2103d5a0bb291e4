package transport

import (
	"fmt"
	"testing"
	"time"
)

// clock is a settable time for the throttle's arithmetic.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestThrottleBurstThenTrickle(t *testing.T) {
	c := &clock{t: time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)}
	th := newThrottle(10, time.Minute, 100) // a burst of 10, then one per 6 s
	th.now = c.now
	for i := range 10 {
		if ok, _ := th.allow("a"); !ok {
			t.Fatalf("request %d of the burst refused", i+1)
		}
	}
	ok, wait := th.allow("a")
	if ok || wait != 6*time.Second {
		t.Fatalf("11th request: allowed %v, wait %s; want refused, 6s", ok, wait)
	}
	if ok, _ := th.allow("b"); !ok {
		t.Fatal("another address is refused")
	}
	c.t = c.t.Add(5 * time.Second)
	if ok, wait := th.allow("a"); ok || wait != time.Second {
		t.Fatalf("after 5 s: allowed %v, wait %s; want refused, 1s", ok, wait)
	}
	c.t = c.t.Add(time.Second)
	if ok, _ := th.allow("a"); !ok {
		t.Fatal("after 6 s one more is allowed")
	}
	if ok, _ := th.allow("a"); ok {
		t.Fatal("and only one")
	}
	// Refused requests do not add debt: after a long pause the full burst is back.
	for range 100 {
		th.allow("a")
	}
	c.t = c.t.Add(time.Minute)
	for i := range 10 {
		if ok, _ := th.allow("a"); !ok {
			t.Fatalf("after a minute's pause, request %d refused", i+1)
		}
	}
}

// However many addresses come, the throttle remembers at most its cap,
// forgetting the least recently seen.
func TestThrottleMemoryIsBounded(t *testing.T) {
	c := &clock{t: time.Now()}
	th := newThrottle(1, time.Hour, 100)
	th.now = c.now
	for i := range 20000 {
		th.allow(fmt.Sprintf("10.0.%d.%d", i/256, i%256))
		if n := th.size(); n > 100 {
			t.Fatalf("%d addresses remembered, cap 100", n)
		}
	}
	// "hot" stays remembered while it keeps coming back; the others rotate out.
	th.allow("hot")
	for i := range 1000 {
		th.allow(fmt.Sprintf("cold-%d", i))
		if i%50 == 0 {
			if ok, _ := th.allow("hot"); ok {
				t.Fatalf("hot was forgotten (allowed again) after %d other addresses", i)
			}
		}
	}
	if n := th.size(); n != 100 || len(th.addrs) != th.lru.Len() {
		t.Fatalf("size %d (map %d, list %d), want 100", n, len(th.addrs), th.lru.Len())
	}
}

func TestAddrKey(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"192.0.2.7:51234", "192.0.2.7"},
		{"192.0.2.7:1", "192.0.2.7"},
		{"192.0.2.7", "192.0.2.7"},              // X-Real-IP has no port
		{"[::ffff:192.0.2.7]:443", "192.0.2.7"}, // IPv4-mapped is the IPv4 address
		{"[2001:db8:1:2:3:4:5:6]:80", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"}, // same /64, same key
		{"[fe80::1%eth0]:80", "fe80::/64"},
		{"not an address", "not an address"},
		{string(make([]byte, 200)), string(make([]byte, 64))},
	} {
		if got := addrKey(tt.in); got != tt.want {
			t.Errorf("addrKey(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
