package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// clusterStopP99 ends a cluster curve: past the knee (p99 100 ms) the steps go
// on, so that one node and the nodes are compared on the same loads.
const clusterStopP99 = 1000.0 // ms

// TargetCluster is three pandachat nodes in cluster mode on loopback.
var TargetCluster = Target{Name: "pandachat-3-nodes", Nodes: 3}

// ClusterLoad is one load of the cluster scenario: Conns connections in
// Rooms rooms, stepped through Steps (deliveries/s for one room, messages/s
// for several) on one node and on a cluster.
type ClusterLoad struct {
	Conns, Rooms int
	Steps        []float64
}

// clusterLoads are the scenario's loads: 5 000 connections in one room and in
// 100 rooms of 50 (quick: 600 in one room and in 20 rooms of 30).
func (s *Suite) clusterLoads() ([]ClusterLoad, time.Duration) {
	if s.Quick {
		return []ClusterLoad{{600, 1, []float64{20e3, 100e3}}, {600, 20, []float64{200, 1000}}}, time.Second
	}
	return []ClusterLoad{
		{5000, 1, []float64{25e3, 50e3, 100e3, 200e3, 400e3, 700e3, 1e6}},
		{5000, 100, []float64{250, 500, 1000, 2000, 4000, 6000, 8000}},
	}, 2 * time.Second
}

// clusterScenario runs every load on one node and on three, one after the
// other, so that the two curves of a load share the machine's mood.
func (s *Suite) clusterScenario(ctx context.Context, res *SuiteResult) {
	loads, dur := s.clusterLoads()
	for _, l := range loads {
		cvs, err := s.Cluster(ctx, TargetCluster, l, dur)
		res.Cluster = append(res.Cluster, cvs...)
		if err != nil {
			res.Skipped = append(res.Skipped, fmt.Sprintf("cluster %d conns in %d rooms: %v", l.Conns, l.Rooms, err))
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// Cluster steps load l on one pandachat node, then on the nodes of t with
// connection i on node i mod t.Nodes, and returns both curves.
func (s *Suite) Cluster(ctx context.Context, t Target, l ClusterLoad, dur time.Duration) ([]Curve, error) {
	members := max(1, l.Conns/max(1, l.Rooms))
	s.logf("== cluster: %d connections in %d room(s), one node against %d", l.Rooms*members, l.Rooms, t.Nodes)
	var out []Curve
	for _, tg := range []Target{TargetServer, t} {
		cv, err := s.curve(ctx, tg, l.Rooms, members, 100, l.Steps, dur, clusterStopP99)
		if err != nil {
			return out, fmt.Errorf("%s: %w", tg.Name, err)
		}
		out = append(out, cv)
	}
	return out, nil
}

// startCluster starts t.Nodes nodes at once (each waits for a quorum of the
// others before it listens) and waits until every one says it can write.
func (s *Suite) startCluster(ctx context.Context, t Target) (*running, error) {
	var listen []string
	for range t.Nodes {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		listen = append(listen, l.Addr().String())
		l.Close()
	}
	r := &running{nodes: make([]*Child, t.Nodes)}
	errs := make([]error, t.Nodes)
	var wg sync.WaitGroup
	for i := range t.Nodes {
		dir, err := os.MkdirTemp("", "pandachat-bench-")
		if err != nil {
			return nil, err
		}
		r.dirs = append(r.dirs, dir)
		args := append(serverArgs("", t.Store, t.Sync, s.Outbox), "--data", dir, "--grace", "5s",
			"--node-name", fmt.Sprintf("n%d", i+1), "--cluster-listen", listen[i], "--cluster-peers", strings.Join(listen, ","))
		wg.Go(func() { r.nodes[i], errs[i] = s.startChild(ctx, args...) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		_ = r.stopCluster()
		return nil, err
	}
	r.c = r.nodes[0]
	for _, c := range r.nodes {
		if err := waitReady(ctx, c.URL, 60*time.Second); err != nil {
			_ = r.stopCluster()
			return nil, err
		}
	}
	s.logf("   %d nodes ready: %s", t.Nodes, strings.Join(r.urls(), " "))
	return r, nil
}

// stopCluster stops every node at once and removes their data.
func (r *running) stopCluster() error {
	errs := make([]error, len(r.nodes))
	var wg sync.WaitGroup
	for i, c := range r.nodes {
		if c != nil {
			wg.Go(func() { errs[i] = c.Stop() })
		}
	}
	wg.Wait()
	for _, d := range r.dirs {
		os.RemoveAll(d)
	}
	return errors.Join(errs...)
}

// waitReady polls url's /readyz until it answers 200.
func waitReady(ctx context.Context, url string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/readyz", nil)
		resp, err := loginClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return fmt.Errorf("%s/readyz not 200 within %v: %v", url, within, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// clusterSection compares each cluster curve with the one-node curve of the
// same load: knees and, step by step, deliveries/s, p99 and server CPU.
func (r *SuiteResult) clusterSection(b *strings.Builder) {
	type pair struct{ one, many *Curve }
	var pairs []pair
	for i := range r.Cluster {
		c := &r.Cluster[i]
		if c.Nodes > 1 && len(pairs) > 0 && pairs[len(pairs)-1].many == nil && pairs[len(pairs)-1].one.shape() == c.shape() {
			pairs[len(pairs)-1].many = c
		} else if c.Nodes <= 1 {
			pairs = append(pairs, pair{one: c})
		}
	}
	if len(pairs) == 0 {
		return
	}
	nodes := 3
	for _, p := range pairs {
		if p.many != nil {
			nodes = p.many.Nodes
		}
	}
	fmt.Fprintf(b, "\n## %d nodes against one (the same load)\n\n", nodes)
	fmt.Fprintf(b, "Connection *i* on node *i* mod %d, every node of the cluster on this machine; one node is the ordinary server (Badger). Server CPU is summed over the nodes. Ratio: %d nodes / one node.\n\n", nodes, nodes)
	b.WriteString("| rooms × members | one node knee deliveries/s | p99 ms | nodes knee deliveries/s | p99 ms | knee ratio | stepping ended by (one / nodes) |\n|---|---:|---:|---:|---:|---:|---|\n")
	kneeOf := func(c *Curve) (string, string, float64) {
		if c == nil || c.Knee == nil {
			return "none", "-", 0
		}
		return si(c.Knee.DeliveriesPerSec), fmt.Sprintf("%.1f", c.Knee.Latency.P99), c.Knee.DeliveriesPerSec
	}
	for _, p := range pairs {
		k1, p1, v1 := kneeOf(p.one)
		kn, pn, vn := kneeOf(p.many)
		ratio, stopN := "-", "not run"
		if v1 > 0 && vn > 0 {
			ratio = fmt.Sprintf("%.2f", vn/v1)
		}
		if p.many != nil {
			stopN = p.many.Stop
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s / %s |\n", p.one.clusterShape(), k1, p1, kn, pn, ratio, p.one.Stop, stopN)
	}
	b.WriteString("\n| rooms × members | target deliveries/s | delivered/s one | nodes | p99 ms one | nodes | p99 ratio | server CPU s one | nodes | CPU per delivery ratio | all delivered once, in order (one / nodes) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	yes := map[bool]string{true: "yes", false: "no"}
	for _, p := range pairs {
		for i, s1 := range p.one.Steps {
			dn, pn, rat, cn, cr, ln := "-", "-", "-", "-", "-", "-"
			if p.many != nil && i < len(p.many.Steps) {
				sn := p.many.Steps[i]
				dn, pn, cn, ln = si(sn.DeliveriesPerSec), fmt.Sprintf("%.1f", sn.Latency.P99), fmt.Sprintf("%.2f", sn.ServerCPUSeconds), yes[sn.Lossless()]
				if s1.Latency.P99 > 0 {
					rat = fmt.Sprintf("%.2f", sn.Latency.P99/s1.Latency.P99)
				}
				if s1.ServerCPUSeconds > 0 && s1.Delivered > 0 && sn.Delivered > 0 {
					cr = fmt.Sprintf("%.2f", (sn.ServerCPUSeconds/float64(sn.Delivered))/(s1.ServerCPUSeconds/float64(s1.Delivered)))
				}
			}
			fmt.Fprintf(b, "| %s | %s | %s | %s | %.1f | %s | %s | %.2f | %s | %s | %s / %s |\n", p.one.clusterShape(), si(s1.TargetDeliveries),
				si(s1.DeliveriesPerSec), dn, s1.Latency.P99, pn, rat, s1.ServerCPUSeconds, cn, cr, yes[s1.Lossless()], ln)
		}
		if p.many != nil && len(p.many.Steps) > len(p.one.Steps) { // the nodes went further
			for _, sn := range p.many.Steps[len(p.one.Steps):] {
				fmt.Fprintf(b, "| %s | %s | - | %s | - | %.1f | - | - | %.2f | - | - / %s |\n", p.one.clusterShape(), si(sn.TargetDeliveries),
					si(sn.DeliveriesPerSec), sn.Latency.P99, sn.ServerCPUSeconds, yes[sn.Lossless()])
			}
		}
	}
}

// clusterShape is "1 × 5000" or "100 × 50".
func (c *Curve) clusterShape() string {
	return fmt.Sprintf("%d × %d", max(1, c.Rooms), c.Members)
}
