package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lxzan/gws"
)

// Options describe the connection set of a load generator.
type Options struct {
	Server      string    // base URL of the chat server, http://host:port; logins go here
	Servers     []string  // the nodes of one cluster: connection i goes to Servers[i mod len]; Server defaults to Servers[0]
	Conns       int       // WebSocket connections to open
	Rooms       int       // connection i joins room i mod Rooms; 0 = 1
	Room        string    // room name prefix; a run id and the room number follow; "" = "bench"
	RunID       string    // shared by cooperating generator processes; "" = from the clock
	Users       int       // distinct dev logins shared by the connections; 0 = min(Conns, 100)
	SrcIPs      int       // spread connections over 127.0.0.1..N (loopback servers only); 0 = 1
	Concurrency int       // connections being opened at once; 0 = 64
	Since       int64     // > 0: connect with since=Since to ask for a replay; 0 = no since
	PID         int       // server process to read RSS and CPU of; 0 = none
	PIDs        []int     // more server processes (a cluster's nodes): their RSS and CPU add up with PID's
	Progress    io.Writer // one line per second while connecting and sending; nil = quiet
}

// Setup is what opening the connection set measured.
type Setup struct {
	Users          int     `json:"users"`
	LoginSeconds   float64 `json:"loginSeconds"`
	LoginsPerSec   float64 `json:"loginsPerSec"`
	Wanted         int     `json:"connsWanted"`
	Conns          int     `json:"conns"` // got their system frame
	Failed         int     `json:"connsFailed"`
	ConnectSeconds float64 `json:"connectSeconds"`
	ConnectsPerSec float64 `json:"connectsPerSec"`
	LimitedBy      string  `json:"limitedBy,omitempty"`
	FirstError     string  `json:"firstError,omitempty"`
	PerServer      []int   `json:"perServer,omitempty"`      // ready connections on each of Options.Servers
	ServerRSSStart int64   `json:"serverRSSStart,omitempty"` // before connecting
	ServerRSSIdle  int64   `json:"serverRSSIdle,omitempty"`  // all connected, idle
	RSSPerConn     float64 `json:"rssPerConn,omitempty"`     // bytes
}

// Gen is an open connection set that runs load steps.
type Gen struct {
	opt     Options
	base    *url.URL
	bases   []*url.URL // Servers, parsed
	runID   string
	clients []*client
	shards  [8]shard
	Setup   Setup

	sent      []atomic.Uint64 // per room
	ready     atomic.Int64
	closing   atomic.Bool
	closedN   atomic.Uint64
	gaps      atomic.Uint64
	dups      atomic.Uint64
	ooo       atomic.Uint64
	errFrames atomic.Uint64
	sendErrs  atomic.Uint64

	mu       sync.Mutex
	closeWhy map[string]int
	firstErr string
	sessions []session
}

type shard struct {
	hist Histogram
	n    atomic.Uint64
	last atomic.Int64 // Unix ns of the latest delivery
	_    [64]byte
}

type session struct{ id, skey string }

type client struct {
	gws.BuiltinEventHandler
	g     *Gen
	idx   int
	room  int
	shard *shard
	conn  *gws.Conn
	chk   seqCheck // read goroutine only
	seq   atomic.Uint64
	ready atomic.Bool
	dead  atomic.Bool
	first atomic.Uint64 // first message id seen (replay)
	lastN atomic.Uint64 // messages seen (replay)
	lastT atomic.Int64  // Unix ns of the latest message (replay)
}

// Open logs in, opens the connections and waits for their system frames.
// When the open-file limit or the local ports run out it keeps what it has
// and says so in Setup.LimitedBy (and on Progress).
func Open(ctx context.Context, opt Options) (*Gen, error) {
	if opt.Conns <= 0 {
		return nil, errors.New("bench: need at least one connection")
	}
	if opt.Rooms <= 0 {
		opt.Rooms = 1
	}
	if opt.Room == "" {
		opt.Room = "bench"
	}
	if opt.Users <= 0 {
		opt.Users = min(opt.Conns, 100)
	}
	opt.Users = min(opt.Users, opt.Conns)
	if opt.SrcIPs <= 0 {
		opt.SrcIPs = 1
	}
	if opt.Concurrency <= 0 {
		opt.Concurrency = 64
	}
	if opt.Server == "" && len(opt.Servers) > 0 {
		opt.Server = opt.Servers[0]
	}
	base, err := parseServer(opt.Server)
	if err != nil {
		return nil, err
	}
	g := &Gen{opt: opt, base: base, runID: opt.RunID, closeWhy: map[string]int{}}
	for _, s := range opt.Servers {
		u, err := parseServer(s)
		if err != nil {
			return nil, err
		}
		g.bases = append(g.bases, u)
	}
	if g.runID == "" {
		g.runID = strconv.FormatInt(time.Now().UnixNano()/1e6%1e9, 36)
	}
	g.sent = make([]atomic.Uint64, opt.Rooms)
	if s, ok := g.serverProc(); ok {
		g.Setup.ServerRSSStart = s.RSS
	}
	if err := g.login(ctx); err != nil {
		return nil, err
	}
	g.connect(ctx)
	if g.Setup.Conns == 0 {
		g.Close()
		return nil, fmt.Errorf("bench: no connection could be opened: %s", g.Setup.FirstError)
	}
	if opt.PID > 0 || len(opt.PIDs) > 0 {
		time.Sleep(300 * time.Millisecond) // let the server settle before reading its RSS
		if s, ok := g.serverProc(); ok {
			g.Setup.ServerRSSIdle = s.RSS
			g.Setup.RSSPerConn = float64(s.RSS-g.Setup.ServerRSSStart) / float64(g.Setup.Conns)
		}
	}
	return g, nil
}

// serverProc is the server's RSS and CPU time, summed over a cluster's
// nodes; ok is false when there is no process to read.
func (g *Gen) serverProc() (s ProcStats, ok bool) {
	for _, pid := range append([]int{g.opt.PID}, g.opt.PIDs...) {
		if pid <= 0 {
			continue
		}
		p, err := ReadProc(pid)
		if err != nil {
			return ProcStats{}, false
		}
		s.RSS += p.RSS
		s.CPUSeconds += p.CPUSeconds
		ok = true
	}
	return s, ok
}

// baseOf is the server connection i goes to.
func (g *Gen) baseOf(i int) *url.URL {
	if len(g.bases) == 0 {
		return g.base
	}
	return g.bases[i%len(g.bases)]
}

func (g *Gen) progress(format string, a ...any) {
	if g.opt.Progress != nil {
		fmt.Fprintf(g.opt.Progress, format+"\n", a...)
	}
}

func (g *Gen) noteErr(err error) {
	g.mu.Lock()
	if g.firstErr == "" {
		g.firstErr = err.Error()
	}
	g.mu.Unlock()
}

// Login logs in one dev user and returns its session.
func Login(ctx context.Context, hc *http.Client, server, nick string) (id, skey string, err error) {
	body, _ := json.Marshal(map[string]string{"nickName": nick})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(server, "/")+"/login/dev", bytes.NewReader(body))
	if err != nil {
		return "", "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	var out struct {
		Session struct {
			ID   string `json:"id"`
			Skey string `json:"skey"`
		} `json:"session"`
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err := json.Unmarshal(data, &out); err != nil || out.Session.ID == "" {
		return "", "", fmt.Errorf("dev login: HTTP %d: %.200s", resp.StatusCode, data)
	}
	return out.Session.ID, out.Session.Skey, nil
}

var loginClient = &http.Client{
	Timeout:   10 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 16, Proxy: nil},
}

func (g *Gen) login(ctx context.Context) error {
	n := g.opt.Users
	g.sessions = make([]session, n)
	start := time.Now()
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	for range min(8, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				id, skey, err := Login(ctx, loginClient, g.opt.Server, "b"+g.runID+"-"+strconv.Itoa(i))
				if err != nil {
					failed.Add(1)
					g.noteErr(err)
					continue
				}
				g.sessions[i] = session{id, skey}
			}
		})
	}
	wg.Wait()
	d := time.Since(start)
	if failed.Load() > 0 {
		return fmt.Errorf("bench: %d of %d dev logins failed: %s", failed.Load(), n, g.firstErr)
	}
	g.Setup.Users = n
	g.Setup.LoginSeconds = d.Seconds()
	g.Setup.LoginsPerSec = float64(n) / d.Seconds()
	return nil
}

// RoomName is the name of room i of this run.
func (g *Gen) RoomName(i int) string { return g.opt.Room + "-" + g.runID + "-" + strconv.Itoa(i) }

func (g *Gen) wsURL(i int) string {
	s := g.sessions[i%len(g.sessions)]
	base := g.baseOf(i)
	scheme := "ws"
	if base.Scheme == "https" {
		scheme = "wss"
	}
	q := url.Values{}
	q.Set("room", g.RoomName(i%g.opt.Rooms))
	q.Set("X-WX-Id", s.id)
	q.Set("X-WX-Skey", s.skey)
	if g.opt.Since > 0 {
		q.Set("since", strconv.FormatInt(g.opt.Since, 10))
	}
	return scheme + "://" + base.Host + "/ws?" + q.Encode()
}

// dialer returns a dialer bound to source address 127.0.0.(1 + i mod SrcIPs)
// when the server is on loopback and more than one source is asked for.
func (g *Gen) dialer(i int) *net.Dialer {
	d := &net.Dialer{Timeout: 10 * time.Second}
	if g.opt.SrcIPs > 1 {
		if ip := net.ParseIP(g.baseOf(i).Hostname()); ip != nil && ip.IsLoopback() && ip.To4() != nil {
			d.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i%g.opt.SrcIPs))}
		}
	}
	return d
}

func (g *Gen) connect(ctx context.Context) {
	n := g.opt.Conns
	g.Setup.Wanted = n
	g.clients = make([]*client, n)
	start := time.Now()
	var next atomic.Int64
	var stop atomic.Bool
	var limited atomic.Value
	var opened atomic.Int64
	done := make(chan struct{})
	go func() { // progress
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				g.progress("connecting: %d/%d open, %d ready, %.0f/s", opened.Load(), n, g.ready.Load(),
					float64(g.ready.Load())/time.Since(start).Seconds())
			}
		}
	}()
	hostOf := func(i int) string {
		b := g.baseOf(i)
		if b.Port() == "" {
			return net.JoinHostPort(b.Hostname(), map[string]string{"http": "80", "https": "443"}[b.Scheme])
		}
		return b.Host
	}
	var wg sync.WaitGroup
	for range min(g.opt.Concurrency, n) {
		wg.Go(func() {
			for !stop.Load() && ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				c := &client{g: g, idx: i, room: i % g.opt.Rooms, shard: &g.shards[i%len(g.shards)]}
				nc, err := g.dialer(i).DialContext(ctx, "tcp", hostOf(i))
				if err == nil {
					c.conn, _, err = gws.NewClientFromConn(c, &gws.ClientOption{Addr: g.wsURL(i)}, nc)
				}
				if err != nil {
					switch {
					case errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE):
						limited.CompareAndSwap(nil, fmt.Sprintf("open-file limit reached after %d connections (limit %d per process): raise it with `ulimit -n 65536` before the run, or split the connections over several generator processes with --procs N", opened.Load(), fileLimit()))
						stop.Store(true)
					case errors.Is(err, syscall.EADDRNOTAVAIL):
						limited.CompareAndSwap(nil, fmt.Sprintf("out of local ports after %d connections: spread them over more source addresses with --src-ips N (127.0.0.1 … 127.0.0.N)", opened.Load()))
						stop.Store(true)
					}
					g.noteErr(err)
					continue
				}
				opened.Add(1)
				g.clients[i] = c
				go c.conn.ReadLoop()
			}
		})
	}
	wg.Wait()
	// Wait for the system frames of everything opened.
	deadline := time.Now().Add(15 * time.Second)
	for g.ready.Load()+int64(g.closedN.Load()) < opened.Load() && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	close(done)
	d := time.Since(start)
	g.Setup.Conns = int(g.ready.Load())
	if len(g.bases) > 1 {
		g.Setup.PerServer = make([]int, len(g.bases))
		for _, c := range g.clients {
			if c != nil && c.ready.Load() {
				g.Setup.PerServer[c.idx%len(g.bases)]++
			}
		}
	}
	g.Setup.Failed = n - g.Setup.Conns
	g.Setup.ConnectSeconds = d.Seconds()
	g.Setup.ConnectsPerSec = float64(g.Setup.Conns) / d.Seconds()
	if v := limited.Load(); v != nil {
		g.Setup.LimitedBy = v.(string)
		g.progress("%s", g.Setup.LimitedBy)
	}
	g.mu.Lock()
	g.Setup.FirstError = g.firstErr
	g.mu.Unlock()
}

func fileLimit() uint64 {
	var r syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r) != nil {
		return 0
	}
	return r.Cur
}

func (c *client) OnMessage(_ *gws.Conn, m *gws.Message) {
	f := ParseFrame(m.Bytes())
	_ = m.Close()
	g := c.g
	switch f.Kind {
	case KindSystem:
		if !c.ready.Load() {
			c.ready.Store(true)
			g.ready.Add(1)
		}
	case KindUser, KindRemote:
		now := time.Now().UnixNano()
		gaps := c.chk.gaps
		switch c.chk.observe(f.ID) {
		case vGap:
			g.gaps.Add(c.chk.gaps - gaps)
		case vDup:
			g.dups.Add(1)
			return
		case vOld:
			g.ooo.Add(1)
			return
		}
		if c.chk.recv == 1 {
			c.first.Store(f.ID)
		}
		c.lastN.Store(c.chk.recv)
		c.lastT.Store(now)
		if f.Stamp {
			c.shard.hist.Record(time.Duration(now - f.Sent))
		}
		c.shard.n.Add(1)
		c.shard.last.Store(now)
	case KindError:
		g.errFrames.Add(1)
	}
}

func (c *client) OnClose(_ *gws.Conn, err error) {
	c.dead.Store(true)
	if c.g.closing.Load() {
		return
	}
	c.g.closedN.Add(1)
	why := "closed"
	if err != nil {
		why = err.Error()
	}
	c.g.mu.Lock()
	c.g.closeWhy[why]++
	c.g.mu.Unlock()
}

// Close closes every connection.
func (g *Gen) Close() {
	g.closing.Store(true)
	for _, c := range g.clients {
		if c != nil && c.conn != nil {
			_ = c.conn.WriteClose(1000, nil)
		}
	}
}

// Conns is the number of connections that are open and ready.
func (g *Gen) Conns() int {
	n := 0
	for _, c := range g.clients {
		if c != nil && c.ready.Load() && !c.dead.Load() {
			n++
		}
	}
	return n
}

func parseServer(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("bench: server %q is not an http(s) URL", s)
	}
	return u, nil
}
