package server_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lxzan/gws"

	"github.com/pandachat/pandachat/actors"
	"github.com/pandachat/pandachat/internal/chattest"
	"github.com/pandachat/pandachat/internal/faultstore"
	"github.com/pandachat/pandachat/persistence"
)

var (
	chaosSeed     = flag.Uint64("chaos.seed", 0, "seed of TestChaos (0: a new one, printed by the test)")
	chaosDuration = flag.Duration("chaos.duration", 3*time.Second, "how long TestChaos injects faults")
	chaosLong     = flag.Bool("chaos.long", false, "run TestChaos for 2 minutes (overrides -chaos.duration)")
	chaosFaults   = flag.String("chaos.faults", "", "comma-separated faults TestChaos injects (default all): "+strings.Join(chaosFaultNames, ","))
	chaosEvents   = flag.String("chaos.events", "", "write TestChaos's whole timeline (faults, connections, problems) to this file")
)

// TestChaos runs many clients in a few rooms over a store that fails on command:
// failed batches, half-stored batches, batches that fail after they were stored,
// stalls, failed reads, and panics that crash rooms; rooms also stop when idle and
// start again. Clients send messages with unique cids, drop and reopen their
// sockets with since=<last id seen>, and re-send every message not yet echoed
// after a reconnect or an ERR_UNAVAILABLE. At the end, for each room:
//   - every client's view (live and replayed) is gap-free and duplicate-free,
//     and equals /history over the range it covers;
//   - /history has contiguous ids and holds each message at most once;
//   - every echoed message is in /history, once, under the id of its echo.
//
// The seed is printed; -chaos.seed=N replays its random choices (goroutine
// scheduling still differs from run to run). -chaos.long runs for 2 minutes.
func TestChaos(t *testing.T) {
	seed := *chaosSeed
	if seed == 0 {
		seed = rand.Uint64()
	}
	d := *chaosDuration
	if *chaosLong {
		d = 2 * time.Minute
	}
	t.Logf("seed %d, %s of faults (replay: go test ./server -run TestChaos -chaos.seed=%d)", seed, d, seed)
	h := newChaos(t, seed)
	h.run(d)
	h.report()
}

// chaosRooms: name, clients, and whether its clients often leave for a while,
// so that the room empties, stops after --room-idle and starts again.
var chaosRooms = []struct {
	name    string
	clients int
	sparse  bool
}{
	{"chaos-a", 5, false},
	{"chaos-b", 4, false},
	{"chaos-c", 2, true},
}

const (
	chaosMaxUnconfirmed = 6               // a client's messages not yet echoed; keeps re-sends under the join stash
	chaosAnswerWithin   = 5 * time.Second // a join or a message left unanswered this long is lost
)

type chaos struct {
	t       *testing.T
	seed    uint64
	env     *chattest.Env
	fs      *faultstore.Store
	rng     *rand.Rand
	start   time.Time
	clients []*chaosClient

	mu       sync.Mutex
	events   []chaosEvent
	problems []chaosEvent
	closes   map[int]int // close codes clients saw from the server
	stats    map[string]int
}

type chaosEvent struct {
	at   time.Duration
	text string
}

func newChaos(t *testing.T, seed uint64) *chaos {
	cfg := noLimit()
	cfg.IdleRoom = 30 * time.Millisecond // empty rooms stop and start again
	cfg.ReplayLimit = 1 << 20            // a view replays everything it missed
	cfg.Retention = -1
	cfg.DevLoginRate = actors.Rate{Off: true}
	h := &chaos{t: t, seed: seed, rng: rand.New(rand.NewPCG(seed, 0)), closes: map[int]int{}, stats: map[string]int{}}
	cfg.WrapStore = func(s persistence.Store) persistence.Store {
		h.fs = faultstore.New(s)
		return h.fs
	}
	h.env = chattest.Start(t, cfg)
	t.Cleanup(h.fs.Clear) // before the server's shutdown: nothing stays stalled
	h.start = time.Now()
	n := 0
	for _, r := range chaosRooms {
		for i := 0; i < r.clients; i++ {
			name := fmt.Sprintf("%s-%d", r.name, i)
			s := h.env.DevLogin(name)
			uid, _ := s.UserInfo["uid"].(string)
			h.clients = append(h.clients, &chaosClient{
				h: h, name: name, room: r.name, sparse: r.sparse, sess: s, uid: uid,
				rng:  rand.New(rand.NewPCG(seed, uint64(n+1))),
				sent: map[string]*chaosSent{},
			})
			n++
		}
	}
	return h
}

func (h *chaos) since() time.Duration { return time.Since(h.start).Truncate(time.Millisecond) }

func (h *chaos) event(format string, args ...any) {
	e := chaosEvent{h.since(), fmt.Sprintf(format, args...)}
	h.mu.Lock()
	h.events = append(h.events, e)
	h.mu.Unlock()
}

func (h *chaos) problem(format string, args ...any) {
	e := chaosEvent{h.since(), fmt.Sprintf(format, args...)}
	h.mu.Lock()
	h.events = append(h.events, chaosEvent{e.at, "PROBLEM " + e.text})
	h.problems = append(h.problems, e)
	h.mu.Unlock()
}

func (h *chaos) count(what string) {
	h.mu.Lock()
	h.stats[what]++
	h.mu.Unlock()
}

// run drives the clients and the faults for d, then lets everything settle and
// checks every view against /history.
func (h *chaos) run(d time.Duration) {
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	for _, c := range h.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.drive(end)
		}()
	}
	h.inject(end)
	wg.Wait()

	// Faults off: every client gets its unanswered messages echoed.
	h.fs.Clear()
	h.event("faults cleared")
	settle := time.Now().Add(chattest.Wait)
	for _, c := range h.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.settle(settle)
		}()
	}
	wg.Wait()

	for _, r := range chaosRooms {
		h.checkRoom(r.name)
	}
}

// chaosFaultNames are the faults -chaos.faults can choose from.
var chaosFaultNames = []string{"fail", "half", "after", "stall-writes", "stall-reads", "fail-read", "panic-append", "panic-messages-after", "panic-last-id"}

// inject arms one random fault every 20–150 ms until end.
func (h *chaos) inject(end time.Time) {
	on := map[string]bool{}
	for _, f := range strings.Split(*chaosFaults, ",") {
		if f = strings.TrimSpace(f); f != "" {
			if !slices.Contains(chaosFaultNames, f) {
				h.t.Fatalf("-chaos.faults: unknown fault %q; want some of %s", f, strings.Join(chaosFaultNames, ","))
			}
			on[f] = true
		}
	}
	for time.Now().Before(end) {
		time.Sleep(time.Duration(20+h.rng.IntN(130)) * time.Millisecond)
		// Weights out of 100; the rest of the time nothing new is armed.
		p, fault := h.rng.IntN(100), ""
		for _, w := range []struct {
			upTo int
			name string
		}{{18, "fail"}, {32, "half"}, {46, "after"}, {56, "stall-writes"}, {61, "stall-reads"}, {70, "fail-read"}, {78, "panic-append"}, {82, "panic-messages-after"}, {85, "panic-last-id"}} {
			if p < w.upTo {
				fault = w.name
				break
			}
		}
		if fault == "" || len(on) > 0 && !on[fault] {
			continue
		}
		switch fault {
		case "fail":
			n := 1 + h.rng.IntN(3)
			h.event("fault: fail the next %d writes", n)
			h.fs.FailWrites(n)
		case "half":
			k := 1 + h.rng.IntN(3)
			h.event("fault: half commit (%d) of the next write", k)
			h.fs.HalfCommit(k)
		case "after":
			h.event("fault: the next write fails after it is stored")
			h.fs.FailAfterCommit(1)
		case "stall-writes":
			stall := time.Duration(20+h.rng.IntN(180)) * time.Millisecond
			h.event("fault: writes stall for %s", stall)
			h.fs.StallWrites()
			time.Sleep(stall)
			h.fs.Release()
		case "stall-reads":
			stall := time.Duration(20+h.rng.IntN(80)) * time.Millisecond
			h.event("fault: reads stall for %s", stall)
			h.fs.StallReads()
			time.Sleep(stall)
			h.fs.Release()
		case "fail-read":
			h.event("fault: the next read (LastID or MessagesAfter) fails")
			h.fs.FailReads(1)
		case "panic-append":
			h.event("fault: the next AppendMessages panics")
			h.fs.PanicOn(faultstore.AppendMessages)
		case "panic-messages-after":
			h.event("fault: the next MessagesAfter panics")
			h.fs.PanicOn(faultstore.MessagesAfter)
		case "panic-last-id":
			h.event("fault: the next LastID panics")
			h.fs.PanicOn(faultstore.LastID)
		}
	}
}

// history reads a room's whole /history, oldest first.
func (h *chaos) history(s chattest.Session, room string) []chattest.Chat {
	var all []chattest.Chat
	before := ""
	for {
		var page []chattest.Chat
		if st := h.env.Do(s, "GET", "/history?room="+room+"&limit=100"+before, nil, &page); st != 200 {
			h.t.Fatalf("/history of %s: HTTP %d", room, st)
		}
		all = append(page, all...)
		if len(page) < 100 || page[0].ID <= 1 {
			return all
		}
		before = fmt.Sprintf("&before=%d", page[0].ID)
	}
}

func (h *chaos) checkRoom(room string) {
	var auditor chattest.Session // a second connection of the room's first client
	var auditorUID string
	for _, c := range h.clients {
		if c.room == room {
			auditor, auditorUID = c.sess, c.uid
			break
		}
	}
	hist := h.history(auditor, room)
	byID := map[uint64]chattest.Chat{}
	var top uint64
	seen := map[string]uint64{} // uid + content → id
	for i, m := range hist {
		if i > 0 && m.ID != hist[i-1].ID+1 || i == 0 && m.ID != 1 {
			h.problem("%s: /history ids not contiguous: %d at position %d", room, m.ID, i)
		}
		byID[m.ID] = m
		top = max(top, m.ID)
		key := m.UID + "\x00" + m.Content
		if prev, dup := seen[key]; dup {
			h.problem("%s: message %q of %s stored twice: ids %d and %d", room, m.Content, h.nameOf(m.UID), prev, m.ID)
		}
		seen[key] = m.ID
	}
	h.event("%s: /history holds %d messages, top id %d", room, len(hist), top)

	// Every client of the room, still connected, reaches the top id live.
	deadline := time.Now().Add(chattest.Wait)
	for _, c := range h.clients {
		if c.room != room {
			continue
		}
		for c.lastID() < top && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		c.mu.Lock()
		if c.last < top {
			h.problem("%s: view ends at id %d, /history goes to %d (never delivered)", c.name, c.last, top)
		}
		for i, v := range c.view {
			id := c.base + uint64(i) + 1
			hm, ok := byID[id]
			switch {
			case !v.ok:
				// a gap, reported when it happened
			case !ok:
				h.problem("%s: saw id %d (%q), not in /history", c.name, id, v.content)
			case hm.UID != v.uid || hm.Content != v.content:
				h.problem("%s: saw id %d as %q of %s, /history has %q of %s", c.name, id, v.content, h.nameOf(v.uid), hm.Content, h.nameOf(hm.UID))
			}
		}
		for cid, s := range c.sent {
			switch hm, ok := byID[s.id]; {
			case s.id == 0:
				if id, stored := seen[c.uid+"\x00"+cid]; stored {
					h.problem("%s: %s never echoed but stored as id %d", c.name, cid, id)
				}
			case !ok || hm.UID != c.uid || hm.Content != cid:
				h.problem("%s: %s echoed as id %d, /history has %q of %s there", c.name, cid, s.id, hm.Content, h.nameOf(hm.UID))
			}
		}
		c.mu.Unlock()
	}

	// A fresh connection with since=0 replays exactly /history.
	a := &chaosClient{h: h, name: "auditor-" + room, room: room, sess: auditor, uid: auditorUID, sent: map[string]*chaosSent{}, anyStart: true}
	if err := a.connect(); err != nil {
		h.problem("%s: %v", a.name, err)
		return
	}
	for a.lastID() < top && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.last != top {
		h.problem("%s: replay since=0 ends at %d, /history at %d", a.name, a.last, top)
	}
	for i, v := range a.view {
		if hm := byID[a.base+uint64(i)+1]; v.ok && (hm.UID != v.uid || hm.Content != v.content) {
			h.problem("%s: replayed id %d as %q, /history has %q", a.name, a.base+uint64(i)+1, v.content, hm.Content)
		}
	}
	a.mu.Unlock()
	a.disconnect(false)
	a.mu.Lock() // for the deferred Unlock
}

func (h *chaos) nameOf(uid string) string {
	for _, c := range h.clients {
		if c.uid == uid {
			return c.name
		}
	}
	return uid
}

func (h *chaos) report() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if *chaosEvents != "" {
		var b strings.Builder
		for _, e := range h.events {
			fmt.Fprintf(&b, "%8s %s\n", e.at, e.text)
		}
		if err := os.WriteFile(*chaosEvents, []byte(b.String()), 0o644); err != nil {
			h.t.Errorf("-chaos.events: %v", err)
		}
	}
	var sent, confirmed, resent int
	for _, c := range h.clients {
		c.mu.Lock()
		for _, s := range c.sent {
			sent++
			resent += s.sends - 1
			if s.id != 0 {
				confirmed++
			}
		}
		c.mu.Unlock()
	}
	var codes []string
	for code, n := range h.closes {
		codes = append(codes, fmt.Sprintf("%d×%d", code, n))
	}
	sort.Strings(codes)
	var stats []string
	for k, n := range h.stats {
		stats = append(stats, fmt.Sprintf("%s %d", k, n))
	}
	sort.Strings(stats)
	h.t.Logf("%d messages sent, %d echoed, %d re-sends; %d faults injected, %d store writes, %d LastID reads (room starts and recoveries); server closes %s; %s",
		sent, confirmed, resent, h.fs.Injected(), h.fs.Calls(faultstore.AppendMessages), h.fs.Calls(faultstore.LastID),
		strings.Join(codes, " "), strings.Join(stats, ", "))
	if len(h.problems) == 0 {
		return
	}
	var b strings.Builder
	for i, p := range h.problems {
		if i == 40 {
			fmt.Fprintf(&b, "  … and %d more\n", len(h.problems)-i)
			break
		}
		fmt.Fprintf(&b, "  %8s %s\n", p.at, p.text)
	}
	first := h.problems[0].at
	fmt.Fprintf(&b, "events around the first problem:\n")
	n := 0
	for _, e := range h.events {
		if e.at >= first-300*time.Millisecond && e.at <= first+20*time.Millisecond && n < 80 {
			fmt.Fprintf(&b, "  %8s %s\n", e.at, e.text)
			n++
		}
	}
	h.t.Errorf("%d problems (seed %d):\n%s", len(h.problems), h.seed, b.String())
}

// chaosClient is one user with one socket at a time in one room.
type chaosClient struct {
	h        *chaos
	name     string
	room     string
	sparse   bool
	anyStart bool // its view may start above id 1 (a replay cut by the limits)
	sess     chattest.Session
	uid      string
	rng      *rand.Rand

	mu      sync.Mutex
	conn    *gws.Conn
	cur     *chaosConn
	connN   int
	last    uint64      // highest id of the view
	base    uint64      // the view holds ids base+1 … last
	view    []chaosSeen // view[i] is id base+1+i
	sent    map[string]*chaosSent
	nextMsg int
}

type chaosSeen struct {
	uid, content string
	ok           bool // false: a hole (a gap the client jumped over)
}

type chaosSent struct {
	sends     int
	conn      int       // the connection it was last sent on
	at        time.Time // when it was last sent
	refused   bool      // ERR_UNAVAILABLE since it was last sent
	refusedAt time.Time
	id        uint64 // the id of its echo; 0 while none came
}

// chaosConn is one socket of a client.
type chaosConn struct {
	gws.BuiltinEventHandler
	c        *chaosClient
	n        int
	dialed   time.Time
	system   bool
	chats    int // chat frames received
	closed   chan struct{}
	code     int
	byClient atomic.Bool // closed by the client: not counted as a server close
}

func (c *chaosClient) lastID() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// connect opens a socket with since=<last id seen> and re-sends every message
// that has not been echoed.
func (c *chaosClient) connect() error {
	c.mu.Lock()
	since := c.last
	c.connN++
	cc := &chaosConn{c: c, n: c.connN, dialed: time.Now(), closed: make(chan struct{})}
	c.mu.Unlock()
	u := strings.Replace(c.h.env.URL, "http", "ws", 1) + "/ws?room=" + c.room + fmt.Sprintf("&since=%d", since) +
		"&X-WX-Id=" + url.QueryEscape(c.sess.ID) + "&X-WX-Skey=" + url.QueryEscape(c.sess.Skey)
	conn, _, err := gws.NewClient(cc, &gws.ClientOption{Addr: u, ReadMaxPayloadSize: 16 << 20})
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	c.mu.Lock()
	c.conn, c.cur = conn, cc
	var resend []string
	for cid, s := range c.sent {
		if s.id == 0 {
			resend = append(resend, cid)
		}
	}
	c.mu.Unlock()
	go conn.ReadLoop()
	c.h.event("%s: connection %d, since=%d, re-sends %d", c.name, cc.n, since, len(resend))
	sort.Strings(resend)
	for _, cid := range resend {
		c.send(cid)
	}
	return nil
}

// send writes a message whose content is its cid.
func (c *chaosClient) send(cid string) {
	c.mu.Lock()
	s := c.sent[cid]
	if s == nil {
		s = &chaosSent{}
		c.sent[cid] = s
	}
	s.sends++
	s.conn, s.at, s.refused = c.connN, time.Now(), false
	conn := c.conn
	c.mu.Unlock()
	b, _ := json.Marshal(map[string]any{"text": true, "content": cid, "cid": cid})
	_ = conn.WriteMessage(gws.OpcodeText, b) // a closed socket: re-sent after the reconnect
}

// disconnect closes the socket (abruptly or with a close frame) and waits until
// its read loop is over, so that no frame of it comes after.
func (c *chaosClient) disconnect(abrupt bool) {
	c.mu.Lock()
	conn, cc := c.conn, c.cur
	c.mu.Unlock()
	if conn == nil {
		return
	}
	cc.byClient.Store(true)
	if abrupt {
		_ = conn.NetConn().Close()
	} else {
		_ = conn.WriteClose(1000, nil)
	}
	c.waitClosed(cc)
}

func (c *chaosClient) waitClosed(cc *chaosConn) {
	select {
	case <-cc.closed:
	case <-time.After(chattest.Wait):
		c.h.problem("%s: connection %d: read loop still running %s after close", c.name, cc.n, chattest.Wait)
	}
	c.mu.Lock()
	if c.cur == cc {
		c.conn, c.cur = nil, nil
	}
	c.mu.Unlock()
}

// drive is the client's life until end: send, drop the socket, come back.
func (c *chaosClient) drive(end time.Time) {
	defer c.disconnect(false)
	for time.Now().Before(end) {
		if !c.ensure() {
			return
		}
		c.check()
		c.resendRefused()
		switch p := c.rng.IntN(100); {
		case p < 3:
			c.h.event("%s: drops its socket", c.name)
			c.disconnect(true)
		case p < 6:
			c.h.event("%s: closes its socket", c.name)
			c.disconnect(false)
		case p < 7 || c.sparse && p < 15:
			pause := time.Duration(30+c.rng.IntN(200)) * time.Millisecond
			c.h.event("%s: leaves for %s", c.name, pause)
			c.disconnect(false)
			time.Sleep(pause)
		default:
			if c.unconfirmed() < chaosMaxUnconfirmed {
				c.mu.Lock()
				c.nextMsg++
				cid := fmt.Sprintf("%s-m%d", c.name, c.nextMsg)
				c.mu.Unlock()
				c.send(cid)
			}
		}
		time.Sleep(time.Duration(2+c.rng.IntN(25)) * time.Millisecond)
	}
}

// settle runs with faults off: reconnect when needed and re-send until every
// message is echoed.
func (c *chaosClient) settle(deadline time.Time) {
	for time.Now().Before(deadline) {
		if !c.ensure() {
			return
		}
		c.check()
		c.resendRefused()
		if c.unconfirmed() == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for cid, s := range c.sent {
		if s.id == 0 {
			c.h.problem("%s: %s never echoed after faults were cleared (sent %d times, refused now: %v)", c.name, cid, s.sends, s.refused)
		}
	}
}

// ensure reconnects a client whose socket closed; false when it cannot.
func (c *chaosClient) ensure() bool {
	c.mu.Lock()
	cc := c.cur
	c.mu.Unlock()
	if cc != nil {
		select {
		case <-cc.closed:
			c.waitClosed(cc)
			time.Sleep(time.Duration(c.rng.IntN(20)) * time.Millisecond)
		default:
			return true
		}
	}
	for i := 0; ; i++ {
		err := c.connect()
		if err == nil {
			return true
		}
		if i == 20 {
			c.h.problem("%s: cannot connect: %v", c.name, err)
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// check flags a join or a message left unanswered on a live socket.
func (c *chaosClient) check() {
	c.mu.Lock()
	cc := c.cur
	var stuck []string
	var stuckConn bool
	if cc != nil && !cc.system && time.Since(cc.dialed) > chaosAnswerWithin {
		stuckConn = true
	}
	for cid, s := range c.sent {
		if cc != nil && s.id == 0 && !s.refused && s.conn == cc.n && time.Since(s.at) > chaosAnswerWithin {
			stuck = append(stuck, cid)
			s.at = time.Now() // report once per send
		}
	}
	c.mu.Unlock()
	if stuckConn {
		c.h.problem("%s: connection %d got no system frame within %s (join lost)", c.name, cc.n, chaosAnswerWithin)
		c.disconnect(true)
	}
	for _, cid := range stuck {
		c.h.problem("%s: %s neither echoed nor refused within %s on a live connection", c.name, cid, chaosAnswerWithin)
	}
}

// resendRefused re-sends, on the same socket, what was refused 20 ms ago or more.
func (c *chaosClient) resendRefused() {
	c.mu.Lock()
	var again []string
	for cid, s := range c.sent {
		if s.id == 0 && s.refused && time.Since(s.refusedAt) > 20*time.Millisecond {
			again = append(again, cid)
		}
	}
	c.mu.Unlock()
	sort.Strings(again)
	for _, cid := range again {
		c.send(cid)
	}
}

func (c *chaosClient) unconfirmed() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, s := range c.sent {
		if s.id == 0 {
			n++
		}
	}
	return n
}

type chaosFrame struct {
	Type    string  `json:"type"`
	ID      uint64  `json:"id"`
	UID     string  `json:"uid"`
	Content string  `json:"content"`
	CID     *string `json:"cid"`
	Error   string  `json:"error"`
	Message string  `json:"message"`
}

func (cc *chaosConn) OnMessage(_ *gws.Conn, m *gws.Message) {
	defer m.Close()
	var f chaosFrame
	if err := json.Unmarshal(m.Bytes(), &f); err != nil {
		cc.c.h.problem("%s: frame is not JSON: %s", cc.c.name, m.Bytes())
		return
	}
	c := cc.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if !cc.system {
		if f.Type != "system" {
			c.h.problem("%s: connection %d: first frame %s, want the system frame", c.name, cc.n, m.Bytes())
		}
		cc.system = true
		if f.Type == "system" {
			return
		}
	}
	switch f.Type {
	case "system":
		c.h.problem("%s: connection %d: a second system frame", c.name, cc.n)
	case "user", "remote":
		c.chat(cc, &f)
	case "presence":
	case "error":
		if f.Error != "ERR_UNAVAILABLE" || f.CID == nil {
			c.h.problem("%s: unexpected error frame %s", c.name, m.Bytes())
			return
		}
		c.h.count("ERR_UNAVAILABLE")
		c.h.event("%s: connection %d: %s refused: %s", c.name, cc.n, *f.CID, f.Message)
		if s := c.sent[*f.CID]; s != nil && s.id == 0 {
			s.refused, s.refusedAt = true, time.Now()
		}
	default:
		c.h.problem("%s: unexpected frame %s", c.name, m.Bytes())
	}
}

// chat adds a chat frame to the view, or recognises the echo of a re-sent message.
func (c *chaosClient) chat(cc *chaosConn, f *chaosFrame) {
	if cc.chats++; cc.chats == 1 {
		c.h.event("%s: connection %d: first chat frame id %d (view at %d)", c.name, cc.n, f.ID, c.last)
	}
	if (f.Type == "user") != (f.UID == c.uid) {
		c.h.problem("%s: id %d of %s came as %q", c.name, f.ID, c.h.nameOf(f.UID), f.Type)
	}
	if f.CID != nil && (f.UID != c.uid || *f.CID != f.Content) {
		c.h.problem("%s: id %d carries cid %q, not its own message's", c.name, f.ID, *f.CID)
	}
	switch {
	case c.last == 0 && len(c.view) == 0 && c.anyStart && f.ID > 0:
		c.base, c.last = f.ID-1, f.ID-1
		fallthrough
	case f.ID == c.last+1:
		c.view = append(c.view, chaosSeen{uid: f.UID, content: f.Content, ok: true})
		c.last = f.ID
	case f.ID <= c.last:
		s := (*chaosSent)(nil)
		if f.CID != nil {
			s = c.sent[*f.CID]
		}
		if s == nil || s.sends < 2 {
			c.h.problem("%s: connection %d: duplicate id %d (%q of %s) after %d", c.name, cc.n, f.ID, f.Content, c.h.nameOf(f.UID), c.last)
			return
		}
		// The echo of a re-sent message: the original, same id.
		c.h.count("echo of a re-send")
		if i := f.ID - c.base - 1; f.ID > c.base && c.view[i].ok && c.view[i].content != f.Content {
			c.h.problem("%s: re-sent %s echoed as id %d, which is %q", c.name, *f.CID, f.ID, c.view[i].content)
		}
	default:
		c.h.problem("%s: connection %d: gap: id %d after %d (%q of %s; chat frame %d of the connection)", c.name, cc.n, f.ID, c.last, f.Content, c.h.nameOf(f.UID), cc.chats)
		for c.last+1 < f.ID {
			c.view = append(c.view, chaosSeen{})
			c.last++
		}
		c.view = append(c.view, chaosSeen{uid: f.UID, content: f.Content, ok: true})
		c.last = f.ID
	}
	if f.CID != nil {
		s := c.sent[*f.CID]
		switch {
		case s == nil:
			c.h.problem("%s: echo of unknown cid %q", c.name, *f.CID)
		case s.id != 0 && s.id != f.ID:
			c.h.problem("%s: %s echoed as id %d and as id %d (stored twice)", c.name, *f.CID, s.id, f.ID)
		default:
			s.id, s.refused = f.ID, false
		}
	}
}

func (cc *chaosConn) OnClose(_ *gws.Conn, err error) {
	code := 0
	if ce, ok := err.(*gws.CloseError); ok {
		code = int(ce.Code)
	}
	cc.code = code
	if !cc.byClient.Load() {
		cc.c.h.mu.Lock()
		cc.c.h.closes[code]++
		cc.c.h.mu.Unlock()
		cc.c.h.event("%s: connection %d closed by the server: %d %v", cc.c.name, cc.n, code, err)
	}
	close(cc.closed)
}
