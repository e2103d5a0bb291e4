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
