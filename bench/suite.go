package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"
)

// Suite runs the scenario suite and writes results.json, results.md,
// latency.svg and rss.svg into Out.
type Suite struct {
	Quick    bool      // a smoke run of about a minute
	Out      string    // output directory; "" = docs/bench
	Outbox   int       // servers' per-connection queue length; 0 = 4096
	Progress io.Writer // progress lines; nil = quiet
	Only     []string  // scenarios to run (see Scenarios); empty = all
	Skip     []string  // scenarios to leave out
	Exe      string    // the pandachat binary the servers run; "" = this executable
	Rounds   int       // many rooms: pandachat and the baseline in turn, this many times; 0 = 3 (1 with Quick)
}

// Scenarios are the suite's parts, in the order they run.
var Scenarios = []string{"idle", "knee", "rooms", "churn", "replay", "cluster"}

// on reports whether scenario name runs.
func (s *Suite) on(name string) bool {
	return (len(s.Only) == 0 || slices.Contains(s.Only, name)) && !slices.Contains(s.Skip, name)
}

// Target is a server the suite measures.
type Target struct {
	Name     string `json:"name"`
	Nodes    int    `json:"nodes,omitempty"`    // > 1: that many pandachat nodes in cluster mode
	Baseline string `json:"baseline,omitempty"` // naive or coalesce: a baseline server
	Store    string `json:"store,omitempty"`
	Sync     bool   `json:"sync,omitempty"`
}

// Suite targets.
var (
	TargetServer   = Target{Name: "pandachat"}
	TargetMemory   = Target{Name: "pandachat-memory", Store: "memory"}
	TargetSync     = Target{Name: "pandachat-sync", Sync: true}
	TargetNaive    = Target{Name: "naive", Baseline: ModeNaive}
	TargetCoalesce = Target{Name: "coalesce", Baseline: ModeCoalesce}
)

// SuiteResult is everything one suite run measured.
type SuiteResult struct {
	Started string         `json:"started"`
	Quick   bool           `json:"quick"`
	Machine Machine        `json:"machine"`
	Idle    []IdleResult   `json:"idle"`
	Curves  []Curve        `json:"curves"`
	Churn   []ChurnResult  `json:"churn"`
	Replay  []ReplayResult `json:"replay"`
	Cluster []Curve        `json:"cluster,omitempty"` // the same loads on one node and on several
	Skipped []string       `json:"skipped,omitempty"`
}

// Machine describes where the suite ran.
type Machine struct {
	CPU        string `json:"cpu"`
	Cores      int    `json:"cores"`
	MemoryKiB  int64  `json:"memoryKiB"`
	Kernel     string `json:"kernel"`
	Go         string `json:"go"`
	FileLimit  uint64 `json:"fileLimit"`
	LoadAvg    string `json:"loadAvg"` // /proc/loadavg at the start: other work on the machine skews every number
	LoadAvgEnd string `json:"loadAvgEnd,omitempty"`
}

// IdleResult is the server's memory for idle connections.
type IdleResult struct {
	Server         string  `json:"server"`
	Conns          int     `json:"conns"`
	Ready          int     `json:"ready"`
	ConnectsPerSec float64 `json:"connectsPerSec"`
	RSSPerConnKiB  float64 `json:"rssPerConnKiB"`
	ServerRSS      int64   `json:"serverRSS"`
	LimitedBy      string  `json:"limitedBy,omitempty"`
}

// Curve is a stepped load on one room, or on many rooms with one sender
// each: the knee is the highest step with p99 <= 100 ms and nothing lost.
type Curve struct {
	Server  string       `json:"server"`
	Nodes   int          `json:"nodes,omitempty"`   // > 1: a cluster, connection i on node i mod Nodes
	PerNode []int        `json:"perNode,omitempty"` // a cluster: connections ready on each node
	Rooms   int          `json:"rooms,omitempty"`   // > 1: many rooms of Members each
	Members int          `json:"members"`
	Size    int          `json:"size"`
	Round   int          `json:"round,omitempty"` // many rooms: which round of the servers in turn, from 1
	Steps   []StepResult `json:"steps"`
	Knee    *StepResult  `json:"knee,omitempty"`
	Stop    string       `json:"stop"` // why the stepping ended
}

// ChurnResult counts connect + login + join + leave cycles.
type ChurnResult struct {
	Server   string  `json:"server"`
	Seconds  float64 `json:"seconds"`
	Cycles   int64   `json:"cycles"`
	PerSec   float64 `json:"perSec"`
	Errors   int64   `json:"errors"`
	FirstErr string  `json:"firstError,omitempty"`
}

// ReplayResult is a reconnect with since= after missed messages.
type ReplayResult struct {
	Server string  `json:"server"`
	Missed int     `json:"missed"`
	Got    int     `json:"got"`
	Millis float64 `json:"millis"` // dial to the last replayed message
	Note   string  `json:"note,omitempty"`
}

const kneeP99 = 100.0 // ms

func (s *Suite) logf(format string, a ...any) {
	if s.Progress != nil {
		fmt.Fprintf(s.Progress, format+"\n", a...)
	}
}

type running struct {
	c     *Child
	dir   string
	nodes []*Child // a cluster: every node, c the first
	dirs  []string
}

// startChild starts the suite's server binary with args.
func (s *Suite) startChild(ctx context.Context, args ...string) (*Child, error) {
	if s.Exe != "" {
		return StartCommand(ctx, s.Exe, args...)
	}
	return StartChild(ctx, args...)
}

func (s *Suite) start(ctx context.Context, t Target, extra ...string) (*running, error) {
	if t.Nodes > 1 {
		return s.startCluster(ctx, t)
	}
	args := append(serverArgs(t.Baseline, t.Store, t.Sync, s.Outbox), extra...)
	r := &running{}
	if t.Baseline == "" {
		dir, err := os.MkdirTemp("", "pandachat-bench-")
		if err != nil {
			return nil, err
		}
		r.dir = dir
		args = append(args, "--data", dir)
	}
	c, err := s.startChild(ctx, args...)
	if err != nil {
		if r.dir != "" {
			os.RemoveAll(r.dir)
		}
		return nil, err
	}
	r.c = c
	return r, nil
}

func (r *running) stop() error {
	if r.nodes != nil {
		return r.stopCluster()
	}
	err := r.c.Stop()
	if r.dir != "" {
		os.RemoveAll(r.dir)
	}
	return err
}

// urls are the servers' base URLs: one, or every node of a cluster.
func (r *running) urls() []string {
	if r.nodes == nil {
		return []string{r.c.URL}
	}
	var u []string
	for _, c := range r.nodes {
		u = append(u, c.URL)
	}
	return u
}

// pids are the server processes.
func (r *running) pids() []int {
	if r.nodes == nil {
		return []int{r.c.PID()}
	}
	var p []int
	for _, c := range r.nodes {
		p = append(p, c.PID())
	}
	return p
}

// Run runs every scenario and writes the results.
func (s *Suite) Run(ctx context.Context) error {
	if s.Out == "" {
		s.Out = "docs/bench"
	}
	if s.Outbox <= 0 {
		s.Outbox = 4096
	}
	for _, n := range append(slices.Clone(s.Only), s.Skip...) {
		if !slices.Contains(Scenarios, n) {
			return fmt.Errorf("no scenario %q (there are %s)", n, strings.Join(Scenarios, ", "))
		}
	}
	if err := os.MkdirAll(s.Out, 0o755); err != nil {
		return err
	}
	res := &SuiteResult{Started: time.Now().UTC().Format(time.RFC3339), Quick: s.Quick, Machine: machine()}

	// Is the real server there? Without it, the suite measures the baselines only.
	real := true
	if r, err := s.start(ctx, TargetServer); err != nil {
		real = false
		res.Skipped = append(res.Skipped, "pandachat: "+err.Error())
		s.logf("pandachat serve is not available, measuring the baselines only: %v", err)
	} else {
		_ = r.stop()
	}
	main := []Target{TargetNaive, TargetCoalesce}
	if real {
		main = append([]Target{TargetServer}, main...)
	}

	idle := []int{1000, 10000, 19000}
	deliv := []float64{50e3, 100e3, 200e3, 400e3, 700e3, 1e6, 1.4e6, 1.8e6, 2.2e6, 2.6e6, 3e6}
	stepDur := 3 * time.Second
	type curveSpec struct {
		t                    Target
		rooms, members, size int
		round                int // many rooms: 1, 2, …
	}
	var curves []curveSpec
	for _, t := range main {
		curves = append(curves, curveSpec{t, 1, 1000, 100, 0})
	}
	if real {
		curves = append(curves, curveSpec{TargetMemory, 1, 1000, 100, 0}, curveSpec{TargetSync, 1, 1000, 100, 0})
	}
	// Many small rooms, one sender each: steps in messages/s. The naive
	// baseline is left out: the one with rooms to compare with coalesces.
	manyRooms := []Target{TargetCoalesce}
	if real {
		manyRooms = append([]Target{TargetServer}, manyRooms...)
	}
	msgSteps := []float64{250, 500, 750, 1000, 2000, 3000, 4000, 5000, 5500, 6000, 6500, 7000, 7500, 8000, 9000, 10000, 12000} // finer near the knees: a ratio of knees is only as fine as the steps
	if s.Quick {
		idle = []int{1000}
		deliv = []float64{100e3, 400e3, 1e6}
		msgSteps = []float64{500, 2000}
		stepDur = time.Second
	}
	rounds := s.Rounds
	if rounds <= 0 {
		rounds = map[bool]int{true: 1, false: 3}[s.Quick]
	}
	shapes := [][2]int{{100, 100}, {1000, 10}}
	if s.Quick {
		shapes = [][2]int{{100, 10}}
	} else {
		for _, t := range main {
			curves = append(curves, curveSpec{t, 1, 1000, 1024, 0}, curveSpec{t, 1, 100, 100, 0}, curveSpec{t, 1, 5000, 100, 0})
		}
	}
	// The servers in turn, round after round: the machine's other work then
	// weighs on both alike, and the medians over rounds outlast its swings.
	for r := 1; r <= rounds; r++ {
		for _, sh := range shapes {
			for _, t := range manyRooms {
				curves = append(curves, curveSpec{t, sh[0], sh[1], 100, r})
			}
		}
	}

	for _, t := range main {
		for _, n := range idle {
			if !s.on("idle") {
				break
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			ir, err := s.idle(ctx, t, n)
			if err != nil {
				res.Skipped = append(res.Skipped, fmt.Sprintf("idle %s %d: %v", t.Name, n, err))
				continue
			}
			res.Idle = append(res.Idle, ir)
		}
	}
	for _, c := range curves {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !s.on(map[bool]string{true: "rooms", false: "knee"}[c.rooms > 1]) {
			continue
		}
		steps := deliv
		if c.rooms > 1 {
			steps = msgSteps
		}
		if c.round > 0 {
			s.logf("== many rooms, round %d of %d", c.round, rounds)
		}
		cv, err := s.curve(ctx, c.t, c.rooms, c.members, c.size, steps, stepDur, kneeP99)
		cv.Round = c.round
		if err != nil {
			res.Skipped = append(res.Skipped, fmt.Sprintf("curve %s %d×%d×%d B: %v", c.t.Name, c.rooms, c.members, c.size, err))
			continue
		}
		res.Curves = append(res.Curves, cv)
	}
	churnDur := 3 * time.Second
	if s.Quick {
		churnDur = time.Second
	}
	for _, t := range main {
		if !s.on("churn") {
			break
		}
		cr, err := s.churn(ctx, t, churnDur)
		if err != nil {
			res.Skipped = append(res.Skipped, fmt.Sprintf("churn %s: %v", t.Name, err))
			continue
		}
		res.Churn = append(res.Churn, cr)
	}
	switch {
	case !s.on("replay"):
	case real:
		rr, err := s.replay(ctx, TargetServer, 1000)
		if err != nil {
			res.Skipped = append(res.Skipped, "replay: "+err.Error())
		} else {
			res.Replay = append(res.Replay, rr)
		}
	default:
		res.Skipped = append(res.Skipped, "replay: needs pandachat (the baselines keep no history)")
	}
	switch {
	case !s.on("cluster"):
	case real:
		s.clusterScenario(ctx, res)
	default:
		res.Skipped = append(res.Skipped, "cluster: needs pandachat")
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	res.Machine.LoadAvgEnd = machine().LoadAvg
	if err := WriteResults(s.Out, res); err != nil {
		return err
	}
	s.logf("wrote %s/{results.json,results.md,latency.svg,rss.svg}", s.Out)
	return nil
}

// idlePing is the ping interval of pandachat in the idle scenario.
const idlePing = time.Second

func (s *Suite) idle(ctx context.Context, t Target, n int) (IdleResult, error) {
	s.logf("== idle: %s, %d connections", t.Name, n)
	var extra []string
	if t.Baseline == "" { // idle connections are pinged: their pongs are part of what they cost
		extra = []string{"--ping-interval", idlePing.String()}
	}
	r, err := s.start(ctx, t, extra...)
	if err != nil {
		return IdleResult{}, err
	}
	defer r.stop()
	time.Sleep(200 * time.Millisecond)
	g, err := Open(ctx, Options{Server: r.c.URL, Conns: n, Rooms: max(1, n/100), Users: min(n, 100), SrcIPs: 4, PID: r.c.PID(), Progress: s.Progress})
	if err != nil {
		return IdleResult{}, err
	}
	defer g.Close()
	time.Sleep(2*idlePing + idlePing/2) // every socket pinged twice, then read again
	st := g.Setup
	if p, err := ReadProc(r.c.PID()); err == nil {
		st.ServerRSSIdle = p.RSS
		st.RSSPerConn = float64(p.RSS-st.ServerRSSStart) / float64(max(1, st.Conns))
	}
	ir := IdleResult{Server: t.Name, Conns: n, Ready: st.Conns, ConnectsPerSec: st.ConnectsPerSec,
		RSSPerConnKiB: st.RSSPerConn / 1024, ServerRSS: st.ServerRSSIdle, LimitedBy: st.LimitedBy}
	s.logf("   %d ready, %.0f connects/s, %.1f KiB RSS per connection", ir.Ready, ir.ConnectsPerSec, ir.RSSPerConnKiB)
	return ir, nil
}

// curve steps up the load until a step loses a message or its p99 passes
// stopP99 ms (kneeP99: stop at the knee). With one room the steps are
// deliveries/s and 10 members send; with many rooms they are messages/s and
// one member of each room sends.
func (s *Suite) curve(ctx context.Context, t Target, rooms, members, size int, steps []float64, dur time.Duration, stopP99 float64) (Curve, error) {
	rooms = max(rooms, 1)
	conns := rooms * members
	if rooms == 1 {
		s.logf("== knee: %s, one room of %d, %d B messages", t.Name, members, size)
	} else {
		s.logf("== knee: %s, %d rooms of %d, one sender each, %d B messages", t.Name, rooms, members, size)
	}
	r, err := s.start(ctx, t)
	if err != nil {
		return Curve{}, err
	}
	defer r.stop()
	g, err := Open(ctx, Options{Servers: r.urls(), Conns: conns, Rooms: rooms, Users: min(conns, 100), SrcIPs: 4, PIDs: r.pids(), Progress: s.Progress})
	if err != nil {
		return Curve{}, err
	}
	defer g.Close()
	cv := Curve{Server: t.Name, Members: members, Size: size, Stop: "highest step reached"}
	if t.Nodes > 1 {
		cv.Nodes, cv.PerNode = t.Nodes, g.Setup.PerServer
		s.logf("   connections ready per node: %v", cv.PerNode)
	}
	if rooms > 1 {
		cv.Rooms = rooms
	}
	senders, rate := min(10, members), func(step float64) float64 { return step / float64(g.Conns()) }
	if rooms > 1 {
		senders, rate = rooms, func(step float64) float64 { return step }
	}
	// A short unrecorded warm-up: fresh goroutine stacks, buffers and room
	// state would otherwise count against the first step.
	g.Step(ctx, StepOptions{Senders: senders, Rate: rate(steps[0]), Size: size, Duration: time.Second / 2, Drain: 2 * time.Second})
	kneeEnd := "" // past the knee, when stopP99 lets the stepping go on
	for _, d := range steps {
		if ctx.Err() != nil {
			break
		}
		st := g.Step(ctx, StepOptions{Senders: senders, Rate: rate(d), Size: size, Duration: dur, Drain: 2 * time.Second})
		st.Hist, st.RoomSent, st.RoomMembers = nil, nil, nil
		cv.Steps = append(cv.Steps, st)
		s.logf("   %s/s target: %s msgs/s sent, %s/s delivered, ratio %.4f, p99 %s, server %s/CPU-s", si(d), si(st.SendRate), si(st.DeliveriesPerSec), st.DeliveryRatio, fmtMs(st.Latency.P99), si(st.DeliveriesPerCPU))
		if !st.Lossless() {
			cv.Stop = fmt.Sprintf("loss at %s/s (ratio %.4f, gaps %d, closed %d)", si(d), st.DeliveryRatio, st.Gaps, st.Closed)
			if st.Gaps+st.Dups+st.OutOfOrder+st.Closed+st.SendErrors == 0 {
				cv.Stop = fmt.Sprintf("%.1f %% still in flight 2 s after sending stopped at %s/s", 100*(1-st.DeliveryRatio), si(d))
			}
			break
		}
		if st.Latency.P99 > stopP99 {
			cv.Stop = fmt.Sprintf("p99 %s at %s/s", fmtMs(st.Latency.P99), si(d))
			break
		}
		if st.Latency.P99 > kneeP99 && kneeEnd == "" {
			kneeEnd = fmt.Sprintf("; knee ended by p99 %s at %s/s", fmtMs(st.Latency.P99), si(d))
		}
		if kneeEnd == "" {
			k := st
			cv.Knee = &k
		}
	}
	if kneeEnd != "" && cv.Stop == "highest step reached" {
		cv.Stop += kneeEnd
	}
	return cv, nil
}

type churnHandler struct {
	gws.BuiltinEventHandler
	got chan struct{}
}

func (h *churnHandler) OnMessage(_ *gws.Conn, m *gws.Message) {
	_ = m.Close()
	select {
	case h.got <- struct{}{}:
	default:
	}
}

func (s *Suite) churn(ctx context.Context, t Target, dur time.Duration) (ChurnResult, error) {
	s.logf("== churn: %s, %v", t.Name, dur)
	r, err := s.start(ctx, t)
	if err != nil {
		return ChurnResult{}, err
	}
	defer r.stop()
	cr, err := Churn(ctx, r.c.URL, dur, 16)
	cr.Server = t.Name
	s.logf("   %d cycles, %.0f/s, %d errors", cr.Cycles, cr.PerSec, cr.Errors)
	return cr, err
}

// Churn runs connect + login + join + leave cycles from workers goroutines
// for dur against server and counts them.
func Churn(ctx context.Context, server string, dur time.Duration, workers int) (ChurnResult, error) {
	g := &Gen{opt: Options{Server: server, Rooms: 1, Room: "churn", SrcIPs: 4}, runID: fmt.Sprint(time.Now().UnixNano() % 1e9)}
	var err error
	if g.base, err = parseServer(server); err != nil {
		return ChurnResult{}, err
	}
	var cycles, errs atomic.Int64
	var firstErr atomic.Value
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			h := &churnHandler{got: make(chan struct{}, 1)}
			for i := w; time.Since(start) < dur && ctx.Err() == nil; i += workers {
				if err := churnOnce(ctx, g, h, i); err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				cycles.Add(1)
			}
		})
	}
	wg.Wait()
	d := time.Since(start)
	cr := ChurnResult{Seconds: d.Seconds(), Cycles: cycles.Load(), PerSec: float64(cycles.Load()) / d.Seconds(), Errors: errs.Load()}
	if v := firstErr.Load(); v != nil {
		cr.FirstErr = v.(string)
	}
	return cr, nil
}

func churnOnce(ctx context.Context, g *Gen, h *churnHandler, i int) error {
	id, skey, err := Login(ctx, loginClient, g.opt.Server, fmt.Sprintf("c%s-%d", g.runID, i))
	if err != nil {
		return err
	}
	nc, err := g.dialer(i).DialContext(ctx, "tcp", g.base.Host)
	if err != nil {
		return err
	}
	u := strings.Replace(g.base.String(), "http", "ws", 1) + "/ws?room=" + g.RoomName(0) + "&X-WX-Id=" + id + "&X-WX-Skey=" + skey
	c, _, err := gws.NewClientFromConn(h, &gws.ClientOption{Addr: u}, nc)
	if err != nil {
		return err
	}
	go c.ReadLoop()
	select {
	case <-h.got:
	case <-time.After(5 * time.Second):
		_ = c.NetConn().Close()
		return fmt.Errorf("no system frame within 5 s")
	}
	return c.WriteClose(1000, nil)
}

func (s *Suite) replay(ctx context.Context, t Target, missed int) (ReplayResult, error) {
	s.logf("== replay: %s, %d missed messages", t.Name, missed)
	r, err := s.start(ctx, t)
	if err != nil {
		return ReplayResult{}, err
	}
	defer r.stop()
	runID := fmt.Sprint(time.Now().UnixNano() % 1e9)
	g, err := Open(ctx, Options{Server: r.c.URL, Conns: 1, RunID: runID, Room: "replay"})
	if err != nil {
		return ReplayResult{}, err
	}
	st := g.Step(ctx, StepOptions{Senders: 1, Rate: float64(missed) * 2, Size: 100, Duration: 550 * time.Millisecond, Drain: 5 * time.Second})
	last := g.lastID()
	g.Close()
	n := min(int(st.Sent), missed)
	since := int64(last) - int64(n)
	start := time.Now()
	g2, err := Open(ctx, Options{Server: r.c.URL, Conns: 1, RunID: runID, Room: "replay", Since: since})
	if err != nil {
		return ReplayResult{}, err
	}
	defer g2.Close()
	c := g2.clients[0]
	for deadline := time.Now().Add(5 * time.Second); int(c.lastN.Load()) < n && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	rr := ReplayResult{Server: t.Name, Missed: n, Got: int(c.lastN.Load())}
	if rr.Got > 0 {
		rr.Millis = float64(time.Unix(0, c.lastT.Load()).Sub(start).Microseconds()) / 1000
	}
	if rr.Got < n {
		rr.Note = "not every missed message came back within 5 s (history limit?)"
	}
	s.logf("   %d of %d replayed in %.1f ms (login, connect and replay)", rr.Got, rr.Missed, rr.Millis)
	return rr, nil
}

// lastID is the highest message id any connection saw in order.
func (g *Gen) lastID() uint64 {
	var m uint64
	for _, c := range g.clients {
		if c != nil && c.lastN.Load() > 0 {
			m = max(m, c.first.Load()+c.lastN.Load()-1)
		}
	}
	return m
}

func machine() Machine {
	m := Machine{Cores: runtime.NumCPU(), Go: runtime.Version(), FileLimit: fileLimit()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		m.LoadAvg = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		fmt.Sscanf(string(b), "MemTotal: %d kB", &m.MemoryKiB)
	}
	return m
}

// WriteResults writes results.json, results.md, latency.svg and rss.svg into dir.
func WriteResults(dir string, res *SuiteResult) error {
	js, _ := json.MarshalIndent(res, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(res.Markdown()), 0o644); err != nil {
		return err
	}
	lat := Chart{Title: "p99 latency against delivered rate (one room)", XLabel: "deliveries per second", YLabel: "p99 latency, ms", LogY: true, HLine: kneeP99}
	for _, c := range res.Curves {
		if c.Rooms > 1 {
			continue // messages/s over many rooms: in results.md
		}
		sr := Series{Name: fmt.Sprintf("%s, %d members, %d B", c.Server, c.Members, c.Size)}
		for _, st := range c.Steps {
			sr.Points = append(sr.Points, [2]float64{st.DeliveriesPerSec, max(st.Latency.P99, 0.1)})
		}
		lat.Series = append(lat.Series, sr)
	}
	rss := Chart{Title: "server RSS per idle connection", XLabel: "connections", YLabel: "KiB per connection"}
	byServer := map[string]int{}
	for _, ir := range res.Idle {
		i, ok := byServer[ir.Server]
		if !ok {
			i = len(rss.Series)
			byServer[ir.Server] = i
			rss.Series = append(rss.Series, Series{Name: ir.Server})
		}
		rss.Series[i].Points = append(rss.Series[i].Points, [2]float64{float64(ir.Ready), ir.RSSPerConnKiB})
	}
	for name, ch := range map[string]Chart{"latency.svg": lat, "rss.svg": rss} {
		var b bytes.Buffer
		if err := ch.WriteSVG(&b); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name), b.Bytes(), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Markdown renders the results as tables.
func (r *SuiteResult) Markdown() string {
	var b strings.Builder
	m := r.Machine
	fmt.Fprintf(&b, "# Bench results\n\nRun %s%s on %s, %d cores, %.1f GiB, Linux %s, %s, open-file limit %d; load average at the start %s, at the end %s.\n\n",
		r.Started, map[bool]string{true: " (quick)", false: ""}[r.Quick], m.CPU, m.Cores, float64(m.MemoryKiB)/(1<<20), m.Kernel, m.Go, m.FileLimit, m.LoadAvg, m.LoadAvgEnd)
	b.WriteString("Server and load generator share the machine. Knee: highest step with p99 ≤ 100 ms and every message delivered once, in order.\n\n")
	var load1 float64
	if _, err := fmt.Sscan(m.LoadAvg, &load1); err == nil && load1 > float64(m.Cores) {
		fmt.Fprintf(&b, "**The machine was busy** (load average %.1f on %d cores): other processes took CPU from server and generator alike, so latencies are high and knees low for every server. Compare servers within this run only.\n\n", load1, m.Cores)
	}
	b.WriteString("## Knees\n\n| server | members | size | knee deliveries/s | p99 at knee ms | deliveries per server CPU-s | stepping ended by |\n|---|---:|---:|---:|---:|---:|---|\n")
	for _, c := range r.Curves {
		knee, p99, per := "none", "-", "-"
		if c.Knee != nil {
			knee, p99, per = si(c.Knee.DeliveriesPerSec), fmt.Sprintf("%.1f", c.Knee.Latency.P99), si(c.Knee.DeliveriesPerCPU)
		}
		fmt.Fprintf(&b, "| %s | %s | %d B | %s | %s | %s | %s |\n", c.Server, c.shape(), c.Size, knee, p99, per, c.Stop)
	}
	r.manyRooms(&b)
	b.WriteString("\n## Steps\n\n| server | members | size | target/s | delivered/s | ratio | p50 ms | p90 ms | p99 ms | max ms | server CPU s | deliveries/CPU-s | generator CPU s |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, c := range r.Curves {
		for _, st := range c.Steps {
			fmt.Fprintf(&b, "| %s | %s | %d B | %s | %s | %.4f | %.1f | %.1f | %.1f | %.1f | %.2f | %s | %.2f |\n", c.Server, c.shape(), c.Size,
				si(st.TargetDeliveries), si(st.DeliveriesPerSec), st.DeliveryRatio, st.Latency.P50, st.Latency.P90, st.Latency.P99, st.Latency.Max,
				st.ServerCPUSeconds, si(st.DeliveriesPerCPU), st.GenCPUSeconds)
		}
	}
	b.WriteString("\n## Idle connections\n\n| server | connections | ready | connects/s | server RSS | RSS per connection KiB |\n|---|---:|---:|---:|---:|---:|\n")
	for _, ir := range r.Idle {
		fmt.Fprintf(&b, "| %s | %d | %d | %.0f | %s | %.1f |\n", ir.Server, ir.Conns, ir.Ready, ir.ConnectsPerSec, iec(ir.ServerRSS), ir.RSSPerConnKiB)
	}
	b.WriteString("\n## Churn (dev login + connect + system frame + close)\n\n| server | seconds | cycles | per second | errors |\n|---|---:|---:|---:|---:|\n")
	for _, c := range r.Churn {
		fmt.Fprintf(&b, "| %s | %.1f | %d | %.0f | %d |\n", c.Server, c.Seconds, c.Cycles, c.PerSec, c.Errors)
	}
	b.WriteString("\n## Replay (reconnect with since)\n\n| server | missed | replayed | ms from login to last replayed |\n|---|---:|---:|---:|\n")
	for _, rr := range r.Replay {
		fmt.Fprintf(&b, "| %s | %d | %d | %.1f |\n", rr.Server, rr.Missed, rr.Got, rr.Millis)
	}
	r.clusterSection(&b)
	if len(r.Skipped) > 0 {
		b.WriteString("\n## Not measured\n\n")
		for _, s := range r.Skipped {
			fmt.Fprintf(&b, "- %s\n", s)
		}
	}
	b.WriteString("\nCharts: [latency.svg](latency.svg), [rss.svg](rss.svg).\n")
	return b.String()
}

// shape is "1000" for one room, "1000×10" for many rooms of 10.
func (c *Curve) shape() string {
	if c.Rooms > 1 {
		return fmt.Sprintf("%d×%d", c.Rooms, c.Members)
	}
	return fmt.Sprint(c.Members)
}

// manyRooms compares pandachat with the coalescing baseline over many small
// rooms, round by round: the ratio of their knees in messages/s, and of server
// CPU per message at each step both served within the knee's bounds; then the
// median of each over the rounds.
func (r *SuiteResult) manyRooms(b *strings.Builder) {
	type pair struct{ server, base *Curve }
	shapes := map[string]map[int]*pair{} // shape → round → the two servers' curves
	var order []string
	for i := range r.Curves {
		c := &r.Curves[i]
		if c.Rooms <= 1 || (c.Server != TargetServer.Name && c.Server != TargetCoalesce.Name) {
			continue
		}
		k := c.shape()
		rounds := shapes[k]
		if rounds == nil {
			rounds = map[int]*pair{}
			shapes[k] = rounds
			order = append(order, k)
		}
		p := rounds[c.Round]
		if p == nil {
			p = &pair{}
			rounds[c.Round] = p
		}
		if c.Server == TargetServer.Name {
			p.server = c
		} else {
			p.base = c
		}
	}
	if len(order) == 0 {
		return
	}
	knee := func(c *Curve) float64 {
		if c == nil || c.Knee == nil {
			return 0
		}
		return c.Knee.Rate
	}
	good := func(st StepResult) bool { return st.Lossless() && st.Sent > 0 && st.Latency.P99 <= kneeP99 }
	b.WriteString("\n## Many small rooms (one sender per room)\n\nEach round runs pandachat and then the coalescing baseline; ratios are pandachat / coalesce, medians over the rounds.\n\n")
	b.WriteString("| rooms × members | round | pandachat knee msgs/s | coalesce knee msgs/s | knee ratio | CPU ratio per step both served (msgs/s: ratio) |\n|---|---|---:|---:|---:|---|\n")
	for _, k := range order {
		rounds := shapes[k]
		var knees []float64
		cpu := map[float64][]float64{} // step: ratio per round
		for _, rd := range slices.Sorted(maps.Keys(rounds)) {
			p := rounds[rd]
			ks, kb := knee(p.server), knee(p.base)
			ratio := "-"
			if kb > 0 && p.server != nil {
				ratio = fmt.Sprintf("%.2f", ks/kb)
				knees = append(knees, ks/kb)
			}
			var per []string
			if p.server != nil && p.base != nil {
				for _, ss := range p.server.Steps {
					for _, bs := range p.base.Steps {
						if ss.Rate != bs.Rate || !good(ss) || !good(bs) || bs.ServerCPUSeconds <= 0 {
							continue
						}
						cr := (ss.ServerCPUSeconds / float64(ss.Sent)) / (bs.ServerCPUSeconds / float64(bs.Sent))
						per = append(per, fmt.Sprintf("%s: %.2f", si(ss.Rate), cr))
						cpu[ss.Rate] = append(cpu[ss.Rate], cr)
					}
				}
			}
			fmt.Fprintf(b, "| %s | %d | %s | %s | %s | %s |\n", k, rd, si(ks), si(kb), ratio, strings.Join(per, ", "))
		}
		if len(rounds) < 2 {
			continue
		}
		var per []string
		worst := 0.0
		for _, rate := range slices.Sorted(maps.Keys(cpu)) {
			m := median(cpu[rate])
			worst = max(worst, m)
			per = append(per, fmt.Sprintf("%s: %.2f (%d)", si(rate), m, len(cpu[rate])))
		}
		kr := "-"
		if len(knees) > 0 {
			kr = fmt.Sprintf("**%.2f** (%.2f–%.2f)", median(knees), slices.Min(knees), slices.Max(knees))
		}
		fmt.Fprintf(b, "| %s | median of %d | | | %s | %s; highest median **%.2f** |\n", k, len(rounds), kr, strings.Join(per, ", "), worst)
	}
}

// median of v (not empty); v is sorted in place.
func median(v []float64) float64 {
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}
