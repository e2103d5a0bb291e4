package transport

import (
	"container/list"
	"net"
	"net/netip"
	"sync"
	"time"
)

// maxThrottled is how many client addresses a throttle remembers (about
// 100 bytes each).
const maxThrottled = 10000

// throttle lets each client address make a burst of requests, then one per
// interval (a token bucket, kept as the time its debt is paid off: GCRA). It
// remembers at most max addresses and forgets the least recently seen first,
// so its memory is bounded whatever the number of clients; a forgotten
// address starts again with a full burst.
type throttle struct {
	interval time.Duration
	burst    int
	max      int
	now      func() time.Time

	mu    sync.Mutex
	addrs map[string]*list.Element // of *addrDebt; never more than max
	lru   list.List                // most recently seen first
}

type addrDebt struct {
	key string
	tat time.Time // when every request allowed so far is paid off
}

func newThrottle(burst int, per time.Duration, max int) *throttle {
	return &throttle{
		interval: per / time.Duration(burst),
		burst:    burst,
		max:      max,
		now:      time.Now,
		addrs:    make(map[string]*list.Element),
	}
}

// allow reports whether the address key may make a request now and, if not,
// how long until it may.
func (t *throttle) allow(key string) (bool, time.Duration) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	var d *addrDebt
	if e, ok := t.addrs[key]; ok {
		t.lru.MoveToFront(e)
		d = e.Value.(*addrDebt)
	} else {
		if t.lru.Len() >= t.max {
			oldest := t.lru.Back()
			t.lru.Remove(oldest)
			delete(t.addrs, oldest.Value.(*addrDebt).key)
		}
		d = &addrDebt{key: key, tat: now}
		t.addrs[key] = t.lru.PushFront(d)
	}
	tat := d.tat
	if tat.Before(now) {
		tat = now
	}
	next := tat.Add(t.interval)
	if limit := now.Add(time.Duration(t.burst) * t.interval); next.After(limit) {
		return false, next.Sub(limit)
	}
	d.tat = next
	return true, 0
}

// size is the number of addresses remembered.
func (t *throttle) size() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.addrs)
}

// addrKey is what a client is counted by: its IP address without the port;
// an IPv6 address by its /64, since one host commonly holds a whole /64.
func addrKey(addr string) string {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	ip, err := netip.ParseAddr(host)
	if err != nil { // a proxy's header we cannot read: count it as given, bounded
		if len(host) > 64 {
			host = host[:64]
		}
		return host
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}
