// Package bench is the load generator, the baseline servers and the
// scenario suite behind `pandachat bench`.
package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// Result is the outcome of one generator run (`--json` prints it).
type Result struct {
	Server string       `json:"server"`
	Target string       `json:"target"` // what served: "pandachat", "naive", "coalesce" or "external"
	Procs  int          `json:"procs"`
	Setup  Setup        `json:"setup"`
	Steps  []StepResult `json:"steps"`
}

type runFlags struct {
	server, baseline, store, out, runID, cpuProfile string
	pid, outbox, procs, rounds                      int
	sync, jsonOut, suite, quick, child              bool
	only, skip                                      string
	opt                                             Options
	steps                                           string
	so                                              StepOptions
}

func newFlagSet(stderr io.Writer) (*flag.FlagSet, *runFlags) {
	f := &runFlags{}
	fs := flag.NewFlagSet("pandachat bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: pandachat bench [flags]            load generator (starts a server unless --server)
       pandachat bench --suite [--quick]    scenario suite: results + charts into --out
       pandachat bench baseline [flags]     bare gws broadcast server to compare with

Flags:
`)
		fs.PrintDefaults()
	}
	fs.StringVar(&f.server, "server", "", "URL of a running chat server (http://host:port); empty = start pandachat serve as a child process")
	fs.IntVar(&f.pid, "pid", 0, "process id of the --server, to read its RSS and CPU seconds from /proc")
	fs.StringVar(&f.baseline, "baseline", "", "start the baseline server `naive|coalesce` as the child instead of pandachat serve")
	fs.StringVar(&f.store, "store", "", "child server's store: memory or badger (empty = the server's default)")
	fs.BoolVar(&f.sync, "sync", false, "child server: fsync every stored batch (--sync)")
	fs.IntVar(&f.outbox, "outbox", 4096, "child server: per-connection outbound queue length (frames)")
	fs.IntVar(&f.opt.Conns, "conns", 1000, "WebSocket connections to open")
	fs.IntVar(&f.opt.Rooms, "rooms", 1, "rooms; connection i joins room i mod rooms")
	fs.StringVar(&f.opt.Room, "room", "bench", "room name prefix (a run id and the room number follow)")
	fs.IntVar(&f.opt.Users, "users", 0, "distinct dev logins shared by the connections (0 = min(conns, 100)); login rate is measured on these")
	fs.IntVar(&f.opt.SrcIPs, "src-ips", 4, "spread connections over source addresses 127.0.0.1..N (loopback servers only)")
	fs.IntVar(&f.opt.Concurrency, "concurrency", 64, "connections being opened at the same time")
	fs.Int64Var(&f.opt.Since, "since", 0, "connect with since=N to ask for a replay of the messages after id N (0 = no since)")
	fs.IntVar(&f.so.Senders, "senders", 0, "connections that send, spread over the rooms (0 = one per room)")
	fs.Float64Var(&f.so.Rate, "rate", 1000, "messages per second, all senders together")
	fs.StringVar(&f.steps, "steps", "", "comma-separated rates (messages/s) to run one after another on the same connections; overrides --rate")
	fs.IntVar(&f.so.Size, "size", 100, "content bytes per message (send timestamp and sequence first, then padding)")
	fs.DurationVar(&f.so.Duration, "duration", 5*time.Second, "sending time per step")
	fs.DurationVar(&f.so.Drain, "drain", 2*time.Second, "longest wait for the last deliveries after sending stops")
	fs.IntVar(&f.procs, "procs", 1, "generator processes; each opens conns/procs connections (for more connections than one process may open files)")
	fs.BoolVar(&f.jsonOut, "json", false, "print the result as JSON on stdout instead of a table")
	fs.BoolVar(&f.suite, "suite", false, "run the scenario suite (idle RSS, knees, sizes, --sync, stores, many rooms, churn, replay, baselines, three nodes against one)")
	fs.BoolVar(&f.quick, "quick", false, "with --suite: a short smoke run of about a minute")
	fs.IntVar(&f.rounds, "rounds", 0, "with --suite: rounds of the many-rooms scenario, pandachat and the baseline in turn; 0 = 3 (1 with --quick)")
	fs.StringVar(&f.only, "only", "", "with --suite: comma-separated scenarios to run ("+strings.Join(Scenarios, ", ")+"); empty = all")
	fs.StringVar(&f.skip, "skip", "", "with --suite: comma-separated scenarios to leave out")
	fs.StringVar(&f.out, "out", "docs/bench", "with --suite: directory for results.json, results.md and the SVG charts")
	fs.StringVar(&f.runID, "run-id", "", "room and user name tag shared by cooperating generator processes (empty = from the clock)")
	fs.BoolVar(&f.child, "child", false, "internal: run as one of --procs generator processes")
	fs.StringVar(&f.cpuProfile, "cpuprofile", "", "write the generator's own CPU profile to this file (go tool pprof)")
	return fs, f
}

// Main runs `pandachat bench` with args (the words after "bench") and
// returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "baseline" {
		return baselineMain(ctx, args[1:], stderr)
	}
	fs, f := newFlagSet(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "pandachat bench: unexpected argument %q (see --help)\n", fs.Arg(0))
		return 2
	}
	if f.rounds < 0 {
		fmt.Fprintf(stderr, "pandachat bench: --rounds %d: want 0 or more (see --help)\n", f.rounds)
		return 2
	}
	if f.suite {
		s := Suite{Quick: f.quick, Rounds: f.rounds, Out: f.out, Progress: stderr, Outbox: f.outbox, Only: list(f.only), Skip: list(f.skip)}
		if err := s.Run(ctx); err != nil {
			fmt.Fprintln(stderr, "pandachat bench:", err)
			return 1
		}
		return 0
	}
	if f.cpuProfile != "" {
		pf, err := os.Create(f.cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(pf)
		}
		if err != nil {
			fmt.Fprintln(stderr, "pandachat bench: --cpuprofile:", err)
			return 2
		}
		defer func() { pprof.StopCPUProfile(); pf.Close() }()
	}
	res, err := run(ctx, f, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "pandachat bench:", err)
		return 1
	}
	if f.jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(res)
	} else {
		writeTable(stdout, res)
	}
	if res.Setup.LimitedBy != "" {
		return 1
	}
	return 0
}

// list splits a comma-separated flag value; "" is none.
func list(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func (f *runFlags) rates() ([]float64, error) {
	if f.steps == "" {
		return []float64{f.so.Rate}, nil
	}
	var out []float64
	for _, s := range strings.Split(f.steps, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || v < 0 {
			return nil, fmt.Errorf("--steps: bad rate %q", s)
		}
		out = append(out, v)
	}
	return out, nil
}

// ServerArgs are the flags the suite and the generator give a child server.
func serverArgs(baseline, store string, sync bool, outbox int) []string {
	if baseline != "" {
		return []string{"bench", "baseline", "--addr", "127.0.0.1:0", "--mode", baseline, "--outbox", strconv.Itoa(outbox)}
	}
	a := []string{"serve", "--addr", "127.0.0.1:0", "--dev-login=true", "--dev-login-rate", "off", "--rate-limit", "off", "--max-conns-per-user", "-1", "--connect-rate", "off", "--outbox", strconv.Itoa(outbox), "--log-level", "warn"}
	if store != "" {
		a = append(a, "--store", store)
	}
	if sync {
		a = append(a, "--sync")
	}
	return a
}

func run(ctx context.Context, f *runFlags, stderr io.Writer) (*Result, error) {
	rates, err := f.rates()
	if err != nil {
		return nil, err
	}
	res := &Result{Server: f.server, Target: "external", Procs: f.procs}
	pid := f.pid
	if f.server == "" {
		args := serverArgs(f.baseline, f.store, f.sync, f.outbox)
		res.Target = "pandachat"
		if f.baseline != "" {
			res.Target = f.baseline
		} else {
			dir, err := os.MkdirTemp("", "pandachat-bench-")
			if err != nil {
				return nil, err
			}
			defer os.RemoveAll(dir)
			args = append(args, "--data", dir)
		}
		c, err := StartChild(ctx, args...)
		if err != nil {
			return nil, err
		}
		defer func() {
			if err := c.Stop(); err != nil {
				fmt.Fprintln(stderr, "pandachat bench:", err)
			}
		}()
		f.server, pid = c.URL, c.PID()
		res.Server = c.URL
		fmt.Fprintf(stderr, "started %s (pid %d) at %s\n", res.Target, pid, c.URL)
	}
	if f.procs > 1 {
		return runProcs(ctx, f, rates, pid, res, stderr)
	}
	opt := f.opt
	opt.Server, opt.PID, opt.RunID, opt.Progress = f.server, pid, f.runID, stderr
	g, err := Open(ctx, opt)
	if err != nil {
		return nil, err
	}
	defer g.Close()
	res.Setup = g.Setup
	stdin := bufio.NewReader(os.Stdin)
	for _, r := range rates {
		so := f.so
		so.Rate = r
		if f.child { // wait for the parent's go, so that all processes step together
			so.Settle = 300 * time.Millisecond
			fmt.Fprintln(stderr, "ready")
			if _, err := stdin.ReadString('\n'); err != nil {
				break
			}
		}
		res.Steps = append(res.Steps, g.Step(ctx, so))
		if ctx.Err() != nil {
			break
		}
	}
	if !f.child {
		for i := range res.Steps {
			res.Steps[i].Hist, res.Steps[i].RoomSent, res.Steps[i].RoomMembers = nil, nil, nil
		}
	}
	return res, nil
}

func writeTable(w io.Writer, r *Result) {
	s := r.Setup
	fmt.Fprintf(w, "server       %s (%s)\n", r.Server, r.Target)
	fmt.Fprintf(w, "logins       %d in %.2f s = %.0f/s\n", s.Users, s.LoginSeconds, s.LoginsPerSec)
	fmt.Fprintf(w, "connections  %d of %d ready in %.2f s = %.0f/s", s.Conns, s.Wanted, s.ConnectSeconds, s.ConnectsPerSec)
	if s.RSSPerConn > 0 {
		fmt.Fprintf(w, "; server RSS %s idle = %.1f KiB per connection", iec(s.ServerRSSIdle), s.RSSPerConn/1024)
	}
	fmt.Fprintln(w)
	if s.LimitedBy != "" {
		fmt.Fprintf(w, "LIMIT        %s\n", s.LimitedBy)
	} else if s.FirstError != "" {
		fmt.Fprintf(w, "first error  %s\n", s.FirstError)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "msgs/s\tsent/s\tdeliveries/s\tratio\tp50 ms\tp90 ms\tp99 ms\tmax ms\tgaps\tdups\tooo\tclosed\tserver CPU s\tdeliv/CPU-s\tRSS\t")
	for _, st := range r.Steps {
		cpu, per, rss := "-", "-", "-"
		if st.ServerCPUSeconds > 0 {
			cpu, per, rss = fmt.Sprintf("%.2f", st.ServerCPUSeconds), si(st.DeliveriesPerCPU), iec(st.ServerRSS)
		}
		fmt.Fprintf(tw, "%.0f\t%.0f\t%s\t%.4f\t%.1f\t%.1f\t%.1f\t%.1f\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t\n",
			st.Rate, st.SendRate, si(st.DeliveriesPerSec), st.DeliveryRatio, st.Latency.P50, st.Latency.P90,
			st.Latency.P99, st.Latency.Max, st.Gaps, st.Dups, st.OutOfOrder, st.Closed, cpu, per, rss)
	}
	_ = tw.Flush()
	for _, st := range r.Steps {
		if st.CloseReasons != "" {
			fmt.Fprintf(w, "closed by the server at %.0f msgs/s: %s\n", st.Rate, st.CloseReasons)
		}
	}
}

func baselineMain(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("pandachat bench baseline", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var opt BaselineOptions
	fs.StringVar(&opt.Addr, "addr", "127.0.0.1:8766", "listen address (port 0 = any free port)")
	fs.StringVar(&opt.Mode, "mode", ModeCoalesce, "naive: gws Broadcaster, one write per frame; coalesce: bounded outbox, all queued frames in one write")
	fs.IntVar(&opt.Outbox, "outbox", 4096, "coalesce: frames queued per connection before it is closed with 1013")
	fs.DurationVar(&opt.WriteTimeout, "write-timeout", 10*time.Second, "coalesce: drop a peer that reads nothing for this long")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: pandachat bench baseline [flags]\n\nA bare gws broadcast server (dev login, /ws, no actors, no store) to compare pandachat with.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	b, err := StartBaseline(opt)
	if err != nil {
		fmt.Fprintln(stderr, "pandachat bench baseline:", err)
		return 1
	}
	fmt.Fprintf(stderr, "baseline %s listening on %s\n", opt.Mode, b.URL)
	<-ctx.Done()
	_ = b.Close()
	return 0
}
