package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// runProcs splits the load over f.procs generator processes of this
// binary, starts their steps together and merges their results: counts add
// up, expected deliveries are recomputed per room over all processes, and
// the latency histograms merge bucket by bucket.
func runProcs(ctx context.Context, f *runFlags, rates []float64, pid int, res *Result, stderr io.Writer) (*Result, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	runID := f.runID
	if runID == "" {
		runID = strconv.FormatInt(time.Now().UnixNano()/1e6%1e9, 36)
	}
	P := f.procs
	share := func(n, p int) int { return n/P + map[bool]int{true: 1, false: 0}[p < n%P] }
	var steps []string
	for _, r := range rates {
		steps = append(steps, strconv.FormatFloat(r/float64(P), 'f', -1, 64))
	}
	type proc struct {
		cmd   *exec.Cmd
		in    io.WriteCloser
		out   bytes.Buffer
		ready chan struct{} // one value per step the process is ready for; closed when it exits
	}
	procs := make([]*proc, P)
	var wg sync.WaitGroup
	for p := range P {
		args := []string{"bench", "--child", "--json", "--server", f.server, "--run-id", runID,
			"--conns", strconv.Itoa(share(f.opt.Conns, p)), "--rooms", strconv.Itoa(f.opt.Rooms), "--room", f.opt.Room,
			"--users", strconv.Itoa(share(f.opt.Users, p)), "--src-ips", strconv.Itoa(f.opt.SrcIPs),
			"--concurrency", strconv.Itoa(f.opt.Concurrency), "--since", strconv.FormatInt(f.opt.Since, 10),
			"--senders", strconv.Itoa(max(1, share(max(f.so.Senders, f.opt.Rooms), p))),
			"--steps", strings.Join(steps, ","), "--size", strconv.Itoa(f.so.Size),
			"--duration", f.so.Duration.String(), "--drain", f.so.Drain.String()}
		pr := &proc{cmd: exec.CommandContext(ctx, exe, args...), ready: make(chan struct{}, len(rates)+1)}
		pr.cmd.Stdout = &pr.out
		if pr.in, err = pr.cmd.StdinPipe(); err != nil {
			return nil, err
		}
		errPipe, err := pr.cmd.StderrPipe()
		if err != nil {
			return nil, err
		}
		if err := pr.cmd.Start(); err != nil {
			return nil, err
		}
		procs[p] = pr
		wg.Go(func() {
			sc := bufio.NewScanner(errPipe)
			for sc.Scan() {
				if sc.Text() == "ready" {
					pr.ready <- struct{}{}
					continue
				}
				fmt.Fprintf(stderr, "[%d] %s\n", p, sc.Text())
			}
			close(pr.ready)
		})
	}
	// Start every step in all processes together; the server's CPU time is
	// read between steps, while every process waits.
	cpu := make([]float64, len(rates)+1)
	srvCPU := func() float64 {
		if pid <= 0 {
			return 0
		}
		s, _ := ReadProc(pid)
		return s.CPUSeconds
	}
	for i := range rates {
		for _, pr := range procs {
			<-pr.ready
		}
		cpu[i] = srvCPU()
		for _, pr := range procs {
			_, _ = io.WriteString(pr.in, "go\n")
		}
	}
	for _, pr := range procs {
		_ = pr.in.Close()
	}
	wg.Wait()
	cpu[len(rates)] = srvCPU()
	var parts []Result
	for p, pr := range procs {
		_ = pr.cmd.Wait()
		var r Result
		if err := json.Unmarshal(pr.out.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("generator process %d: no result (%v)", p, err)
		}
		parts = append(parts, r)
	}
	merged := mergeResults(parts)
	merged.Server, merged.Target, merged.Procs = res.Server, res.Target, P
	if pid > 0 {
		for i := range merged.Steps {
			st := &merged.Steps[i]
			st.ServerCPUSeconds = cpu[i+1] - cpu[i]
			if st.ServerCPUSeconds > 0 {
				st.DeliveriesPerCPU = float64(st.Delivered) / st.ServerCPUSeconds
			}
			if s, err := ReadProc(pid); err == nil {
				st.ServerRSS = s.RSS
			}
		}
	}
	return merged, nil
}

func mergeResults(parts []Result) *Result {
	out := &Result{}
	for _, r := range parts {
		s := &out.Setup
		s.Users += r.Setup.Users
		s.LoginsPerSec += r.Setup.LoginsPerSec
		s.LoginSeconds = max(s.LoginSeconds, r.Setup.LoginSeconds)
		s.Wanted += r.Setup.Wanted
		s.Conns += r.Setup.Conns
		s.Failed += r.Setup.Failed
		s.ConnectSeconds = max(s.ConnectSeconds, r.Setup.ConnectSeconds)
		s.ConnectsPerSec += r.Setup.ConnectsPerSec
		if s.LimitedBy == "" {
			s.LimitedBy = r.Setup.LimitedBy
		}
		if s.FirstError == "" {
			s.FirstError = r.Setup.FirstError
		}
	}
	for i := range parts[0].Steps {
		var st StepResult
		h := new(Histogram)
		var roomSent []uint64
		var roomMembers []int
		for _, r := range parts {
			if i >= len(r.Steps) {
				continue
			}
			p := r.Steps[i]
			st.Members += p.Members
			st.Senders += p.Senders
			st.Rate += p.Rate
			st.TargetDeliveries += p.TargetDeliveries
			st.Size = p.Size
			st.Seconds = max(st.Seconds, p.Seconds)
			st.Sent += p.Sent
			st.SendRate += p.SendRate
			st.Delivered += p.Delivered
			st.Gaps += p.Gaps
			st.Dups += p.Dups
			st.OutOfOrder += p.OutOfOrder
			st.ErrorFrames += p.ErrorFrames
			st.SendErrors += p.SendErrors
			st.Closed += p.Closed
			st.GenCPUSeconds += p.GenCPUSeconds
			h.AddBuckets(p.Hist)
			for len(roomSent) < len(p.RoomSent) {
				roomSent, roomMembers = append(roomSent, 0), append(roomMembers, 0)
			}
			for k := range p.RoomSent {
				roomSent[k] += p.RoomSent[k]
				if k < len(p.RoomMembers) {
					roomMembers[k] += p.RoomMembers[k]
				}
			}
		}
		for k := range roomSent {
			st.Expected += roomSent[k] * uint64(roomMembers[k])
		}
		if st.Expected > 0 {
			st.DeliveryRatio = float64(st.Delivered) / float64(st.Expected)
		}
		if st.Seconds > 0 {
			st.DeliveriesPerSec = float64(st.Delivered) / st.Seconds
		}
		st.Latency = latencyOf(h)
		out.Steps = append(out.Steps, st)
	}
	return out
}
