package bench

import (
	"context"
	"os"
	"path/filepath"
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
