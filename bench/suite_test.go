package bench

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestChurnAgainstBaseline(t *testing.T) {
	b, err := StartBaseline(BaselineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cr, err := Churn(context.Background(), b.URL, 200*time.Millisecond, 4)
	if err != nil {
		t.Fatal(err)
	}
	if cr.Cycles == 0 || cr.Errors != 0 {
		t.Fatalf("cycles %d errors %d (%s), want some cycles and no errors", cr.Cycles, cr.Errors, cr.FirstErr)
	}
}

func TestSuiteWritesResults(t *testing.T) {
	dir := t.TempDir()
	knee := StepResult{Members: 1000, DeliveriesPerSec: 5e5, DeliveryRatio: 1, Latency: Latency{P99: 40}}
	res := &SuiteResult{
		Machine: machine(),
		Idle:    []IdleResult{{Server: "coalesce", Conns: 1000, Ready: 1000, RSSPerConnKiB: 13.2}, {Server: "coalesce", Conns: 10000, Ready: 10000, RSSPerConnKiB: 9.5}},
		Curves: []Curve{{Server: "coalesce", Members: 1000, Size: 100, Knee: &knee, Stop: "p99 150ms at 1M/s",
			Steps: []StepResult{knee, {Members: 1000, DeliveriesPerSec: 9e5, DeliveryRatio: 1, Latency: Latency{P99: 150}}}}},
		Churn:   []ChurnResult{{Server: "coalesce", Seconds: 1, Cycles: 2000, PerSec: 2000}},
		Skipped: []string{"replay: needs pandachat"},
	}
	if err := WriteResults(dir, res); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"results.json", "results.md", "latency.svg", "rss.svg"} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Size() == 0 {
			t.Errorf("%s not written: %v", name, err)
		}
	}
	md, _ := os.ReadFile(filepath.Join(dir, "results.md"))
	for _, want := range []string{"| coalesce | 1000 | 100 B | 500.0k | 40.0 |", "## Not measured", "| coalesce | 10000 | 10000 |"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("results.md lacks %q:\n%s", want, md)
		}
	}
}

// The cluster scenario, tiny: three nodes of the real binary, 30 connections
// spread over them in two rooms, one short step on one node and on three.
// Every message reaches every member once, in order, on both.
func TestClusterScenario(t *testing.T) {
	if serverBin == "" {
		t.Fatal(buildErr)
	}
	s := &Suite{Exe: serverBin, Outbox: 4096, Progress: tlog{t}}
	cvs, err := s.Cluster(context.Background(), TargetCluster, ClusterLoad{Conns: 30, Rooms: 2, Steps: []float64{40}}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(cvs) != 2 || cvs[0].Nodes != 0 || cvs[1].Nodes != 3 {
		t.Fatalf("curves %+v, want one node then three", cvs)
	}
	if !slices.Equal(cvs[1].PerNode, []int{10, 10, 10}) {
		t.Errorf("connections per node %v, want 10 on each", cvs[1].PerNode)
	}
	for _, cv := range cvs {
		if len(cv.Steps) != 1 {
			t.Fatalf("%s: %d steps, want 1 (%s)", cv.Server, len(cv.Steps), cv.Stop)
		}
		st := cv.Steps[0]
		if st.Members != 30 || st.Sent == 0 || !st.Lossless() || st.ServerCPUSeconds <= 0 {
			t.Errorf("%s: members %d, sent %d, delivered %d of %d, gaps %d, dups %d, closed %d (%s), server CPU %.2f s",
				cv.Server, st.Members, st.Sent, st.Delivered, st.Expected, st.Gaps, st.Dups, st.Closed, st.CloseReasons, st.ServerCPUSeconds)
		}
	}
	md := (&SuiteResult{Cluster: cvs}).Markdown()
	if !strings.Contains(md, "## 3 nodes against one") || !strings.Contains(md, "| 2 × 15 |") {
		t.Errorf("results.md lacks the cluster comparison:\n%s", md)
	}
}

func TestSuiteRefusesAnUnknownScenario(t *testing.T) {
	s := &Suite{Out: t.TempDir(), Only: []string{"idle", "clusters"}}
	if err := s.Run(context.Background()); err == nil || !strings.Contains(err.Error(), `"clusters"`) {
		t.Fatalf("Run with --only clusters: %v, want an error naming it", err)
	}
}

// tlog writes progress lines to the test log.
type tlog struct{ t *testing.T }

func (l tlog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// The many-rooms table gives each round's knee ratio and CPU ratio per step
// both servers served within the knee's bounds, then the medians over the
// rounds and the highest of the steps' medians; a step either server lost
// messages in, or served past 100 ms, is left out of the CPU ratios.
func TestManyRoomsMedians(t *testing.T) {
	step := func(rate, cpu, p99 float64, lost bool) StepResult {
		st := StepResult{Rate: rate, Sent: uint64(rate), Expected: 10, Delivered: 10, ServerCPUSeconds: cpu, Latency: Latency{P99: p99}}
		if lost {
			st.Delivered = 9
		}
		return st
	}
	curve := func(server string, round int, knee float64, steps ...StepResult) Curve {
		c := Curve{Server: server, Rooms: 1000, Members: 10, Size: 100, Round: round, Steps: steps}
		for i := range c.Steps {
			if c.Steps[i].Rate == knee {
				c.Knee = &c.Steps[i]
			}
		}
		return c
	}
	p, b := TargetServer.Name, TargetCoalesce.Name
	res := &SuiteResult{Curves: []Curve{
		curve(p, 1, 2000, step(1000, 1.1, 5, false), step(2000, 2.4, 50, false), step(3000, 9, 300, false)),
		curve(b, 1, 2000, step(1000, 1.0, 5, false), step(2000, 2.0, 60, false), step(3000, 9, 200, false)),
		curve(p, 2, 3000, step(1000, 1.3, 5, false), step(2000, 2.2, 50, false), step(3000, 3.0, 90, false)),
		curve(b, 2, 2000, step(1000, 1.0, 5, false), step(2000, 2.0, 60, false), step(3000, 9, 200, false)),
		curve(p, 3, 1000, step(1000, 1.2, 5, false), step(2000, 2.2, 50, true)),
		curve(b, 3, 2000, step(1000, 1.0, 5, false), step(2000, 2.0, 60, false)),
	}}
	var md strings.Builder
	res.manyRooms(&md)
	for _, want := range []string{
		"| 1000×10 | 1 | 2.0k | 2.0k | 1.00 | 1.0k: 1.10, 2.0k: 1.20 |",
		"| 1000×10 | 2 | 3.0k | 2.0k | 1.50 | 1.0k: 1.30, 2.0k: 1.10 |",
		"| 1000×10 | 3 | 1.0k | 2.0k | 0.50 | 1.0k: 1.20 |",
		"| 1000×10 | median of 3 | | | **1.00** (0.50–1.50) | 1.0k: 1.20 (3), 2.0k: 1.15 (2); highest median **1.20** |",
	} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("the table lacks %q:\n%s", want, md.String())
		}
	}
}
