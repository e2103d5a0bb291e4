package persistence

import (
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pandachat/pandachat/cluster"
)

// Embedded NATS nodes shared by the tests of this package: starting a
// cluster costs seconds, a store on it (its own Prefix) costs milliseconds.
var (
	sharedMu    sync.Mutex
	shared      = map[int][]*cluster.Node{}
	sharedDirs  []string
	prefixCount atomic.Int64
)

// SharedNodes returns the n nodes (1 or 3) of a cluster that lives until
// StopSharedNodes, starting it on first use.
func SharedNodes(t testing.TB, n int) []*cluster.Node {
	t.Helper()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if nodes, ok := shared[n]; ok {
		return nodes
	}
	dir, err := os.MkdirTemp("", "pandachat-nats")
	if err != nil {
		t.Fatal(err)
	}
	sharedDirs = append(sharedDirs, dir)
	nodes, err := StartNodes(dir, n)
	if err != nil {
		t.Fatal(err)
	}
	shared[n] = nodes
	return nodes
}

// StartNodes starts n nodes on loopback ports that route to each other
// (one node: no routes), with their data under dir.
func StartNodes(dir string, n int) ([]*cluster.Node, error) {
	var addrs []string
	if n > 1 {
		for range n {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return nil, err
			}
			addrs = append(addrs, l.Addr().String())
			l.Close()
		}
	}
	nodes := make([]*cluster.Node, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		o := cluster.Options{
			Name:         fmt.Sprintf("n%d", i+1),
			Dir:          fmt.Sprintf("%s/n%d", dir, i+1),
			StartTimeout: 30 * time.Second,
		}
		if n > 1 {
			o.Listen, o.Peers = addrs[i], addrs
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			nodes[i], errs[i] = cluster.Start(o)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			for _, nd := range nodes {
				if nd != nil {
					nd.Close()
				}
			}
			return nil, fmt.Errorf("node %d: %w", i+1, err)
		}
	}
	return nodes, nil
}

// StopSharedNodes closes the shared clusters and removes their data.
func StopSharedNodes() {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	var wg sync.WaitGroup
	for _, nodes := range shared {
		for _, nd := range nodes {
			wg.Add(1)
			go func() { defer wg.Done(); nd.Close() }()
		}
	}
	wg.Wait()
	for _, d := range sharedDirs {
		os.RemoveAll(d)
	}
}

// NextPrefix names a fresh set of streams and buckets.
func NextPrefix() string { return fmt.Sprintf("t%d", prefixCount.Add(1)) }

// EncodeEntry is encodeEntry, for tests that write entries by hand.
var EncodeEntry = encodeEntry

// RoomSubject is the subject of room's entries.
func (s *JetStream) RoomSubject(room string) string { return s.roomSubject(room) }

// WrapStreams puts wrap between b and the object store's streams (to cut
// them), and sets how long a broken stream is opened again.
func (b *JetStreamBlobs) WrapStreams(resume time.Duration, wrap func(open func(id string) (io.ReadCloser, int64, error), id string) (io.ReadCloser, int64, error)) {
	b.resume = resume
	b.get = func(id string) (io.ReadCloser, int64, error) { return wrap(b.stream, id) }
}
