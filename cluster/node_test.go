package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

func TestOptionsRefused(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		name string
		o    Options
		want string
	}{
		{"no directory", Options{Name: "a"}, "no data directory"},
		{"space in name", Options{Name: "a b", Dir: dir}, "node name"},
		{"leading dot", Options{Name: ".a", Dir: dir}, "node name"},
		{"double dot", Options{Name: "a..b", Dir: dir}, "node name"},
		{"name too long", Options{Name: strings.Repeat("a", 65), Dir: dir}, "node name"},
		{"peers without listen", Options{Name: "a", Dir: dir, Peers: []string{"127.0.0.1:7001"}}, "needs --cluster-listen"},
		{"listen without port", Options{Name: "a", Dir: dir, Listen: "127.0.0.1", Peers: []string{"127.0.0.1:7001"}}, "--cluster-listen"},
		{"bad peer port", Options{Name: "a", Dir: dir, Listen: "127.0.0.1:7001", Peers: []string{"127.0.0.1:x"}}, "--cluster-peers entry"},
		{"peer port 0", Options{Name: "a", Dir: dir, Listen: "127.0.0.1:7001", Peers: []string{"127.0.0.1:0"}}, "--cluster-peers entry"},
		{"more replicas than nodes", Options{Name: "a", Dir: dir, Listen: "127.0.0.1:7001", Peers: []string{"127.0.0.1:7002"}, Replicas: 3}, "only 2 nodes"},
		{"negative replicas", Options{Name: "a", Dir: dir, Replicas: -1}, "want 1 to 5"},
		{"only itself", Options{Name: "a", Dir: dir, Listen: "127.0.0.1:7001", Peers: []string{"127.0.0.1:7001"}}, "at least two nodes"},
	} {
		n, err := Start(tt.o)
		if err == nil {
			n.Close()
			t.Errorf("%s: started", tt.name)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want it to say %q", tt.name, err, tt.want)
		}
	}
}

func TestReplicasDefault(t *testing.T) {
	for _, tt := range []struct {
		listen string
		peers  []string
		want   int
	}{
		{"", nil, 1},
		{"127.0.0.1:7001", []string{"127.0.0.1:7002"}, 2}, // itself not listed
		{"127.0.0.1:7001", []string{"127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"}, 3},
		{"127.0.0.1:7001", []string{"127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003", "127.0.0.1:7004", "127.0.0.1:7005"}, 3},
	} {
		o := Options{Name: "a", Dir: "x", Listen: tt.listen, Peers: tt.peers}
		if err := o.fill(); err != nil || o.Replicas != tt.want {
			t.Errorf("listen %s peers %v: replicas %d, %v; want %d", tt.listen, tt.peers, o.Replicas, err, tt.want)
		}
	}
}

// A node on its own: it starts, is ready, lists itself and owns every room.
func TestSingleNode(t *testing.T) {
	n, err := Start(Options{Name: "solo", Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if err := n.Ready(); err != nil {
		t.Errorf("Ready: %v", err)
	}
	if got := n.Peers(); !reflect.DeepEqual(got, []Peer{{Name: "solo", Up: true}}) {
		t.Errorf("Peers = %v", got)
	}
	if got := n.Owner("lobby"); got != "solo" {
		t.Errorf("Owner = %q", got)
	}
	n.Close()
	if err := n.Ready(); err == nil {
		t.Error("a closed node says it is ready")
	}
}

// The membership watch can time out while a cluster forms (the client's API
// timeout passes before its consumer is made): the start tries it again
// instead of failing, and the node then knows its members.
func TestStartRetriesTheMembershipWatch(t *testing.T) {
	real, failed := watchMembers, 0
	watchMembers = func(kv jetstream.KeyValue) (jetstream.KeyWatcher, error) {
		if failed < 2 {
			failed++
			return nil, context.DeadlineExceeded
		}
		return real(kv)
	}
	t.Cleanup(func() { watchMembers = real })
	n, err := Start(Options{Name: "solo", Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("start after %d timed-out watches: %v", failed, err)
	}
	defer n.Close()
	if got := n.Live(); failed != 2 || !reflect.DeepEqual(got, []string{"solo"}) {
		t.Errorf("after %d timed-out watches: live %v, want [solo]", failed, got)
	}
}

// The data directory is required to be usable.
func TestUnusableDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if n, err := Start(Options{Name: "a", Dir: dir}); err == nil {
		n.Close()
		t.Fatal("started with a file as its directory")
	}
}

// Three nodes: each lists all three as up and places rooms the same way; a
// node that leaves is down for the others at once and its rooms move; the
// last node alone has no quorum and stops being ready, and says so.
func TestThreeNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	nodes := startThree(t)
	want := []Peer{{"n1", true}, {"n2", true}, {"n3", true}}
	waitFor(t, "every node lists all three up", func() bool {
		for _, n := range nodes {
			if !reflect.DeepEqual(n.Peers(), want) {
				return false
			}
		}
		return true
	})
	for i := range 50 {
		room := fmt.Sprintf("room-%d", i)
		if a, b, c := nodes[0].Owner(room), nodes[1].Owner(room), nodes[2].Owner(room); a != b || b != c {
			t.Fatalf("room %s: owners %s %s %s", room, a, b, c)
		}
	}

	start := time.Now()
	nodes[2].Close()
	closed := time.Since(start)
	waitFor(t, "n3 is down for the others", func() bool {
		return reflect.DeepEqual(nodes[0].Peers(), []Peer{{"n1", true}, {"n2", true}, {"n3", false}}) &&
			reflect.DeepEqual(nodes[1].Live(), []string{"n1", "n2"})
	})
	t.Logf("n3 closed in %s; the others saw it leave after %s", closed.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	for _, n := range nodes[:2] {
		if err := n.Ready(); err != nil {
			t.Errorf("%s with two of three up: %v", n.Name(), err)
		}
	}

	nodes[1].Close()
	start = time.Now()
	waitFor(t, "n1 alone is not ready", func() bool { return nodes[0].Ready() != nil })
	t.Logf("n1 alone: not ready after %s: %v", time.Since(start).Round(time.Millisecond), nodes[0].Ready())
	if err := nodes[0].Ready(); !strings.Contains(err.Error(), "no quorum") {
		t.Errorf("Ready = %v, want it to say no quorum", err)
	}
}

// startThree starts three nodes that route to each other, closed at the end.
func startThree(t *testing.T) []*Node {
	t.Helper()
	var addrs []string
	for range 3 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, l.Addr().String())
		l.Close()
	}
	dir := t.TempDir()
	nodes := make([]*Node, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nodes[i], errs[i] = Start(Options{
				Name: fmt.Sprintf("n%d", i+1), Dir: filepath.Join(dir, fmt.Sprint(i)),
				Listen: addrs[i], Peers: addrs, StartTimeout: 30 * time.Second,
			})
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, n := range nodes {
			if n != nil {
				n.Close()
			}
		}
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: %v", i+1, err)
		}
	}
	return nodes
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A node that leaves hands over the streams it leads: a writer on another
// node goes on, each write acknowledged (the longest wait is logged: the
// contract wants no stall over 1 s for the others).
func TestLeaveHandsOverLeadership(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	nodes := startThree(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := nodes[0].JetStream().CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	var leader *Node
	waitFor(t, "the stream has a leader", func() bool {
		for _, n := range nodes {
			if n.ns.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, "T") {
				leader = n
				return true
			}
		}
		return false
	})
	writer := nodes[0]
	if writer == leader {
		writer = nodes[1]
	}
	done := make(chan struct{})
	var (
		worst  time.Duration
		writes int
		werr   error
	)
	go func() {
		defer close(done)
		last := time.Now()
		for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
			// As the store writes: short attempts, retried (an attempt sent
			// to the leader as it goes gets no answer).
			err := Retry(ctx, nil, "write", 500*time.Millisecond, func(ctx context.Context) error {
				_, err := writer.JetStream().Publish(ctx, "t.x", []byte("x"))
				return err
			})
			if err != nil {
				werr = err
				return
			}
			writes++
			worst = max(worst, time.Since(last))
			last = time.Now()
		}
	}()
	time.Sleep(time.Second)
	start := time.Now()
	leader.Close()
	t.Logf("leader %s left in %s", leader.Name(), time.Since(start).Round(time.Millisecond))
	<-done
	if werr != nil {
		t.Fatalf("a write on %s failed while %s left: %v", writer.Name(), leader.Name(), werr)
	}
	t.Logf("%d writes on %s; longest wait for an ack while the leader left: %s", writes, writer.Name(), worst.Round(time.Millisecond))
	if leader.ns.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, "T") {
		t.Error("the node that left still leads the stream")
	}
}

// With a secret, only nodes that present it join: a node with another secret
// cannot form a route, so it never becomes a member; the secret is not logged.
func TestSecretGuardsTheRoutes(t *testing.T) {
	var addrs []string
	for range 3 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, l.Addr().String())
		l.Close()
	}
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	const secret, wrong = "s3cr3t,with:odd@chars", "not-the-secret"
	dir := t.TempDir()
	nodes := make([]*Node, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nodes[i], errs[i] = Start(Options{Name: fmt.Sprintf("n%d", i+1), Dir: filepath.Join(dir, fmt.Sprint(i)),
				Listen: addrs[i], Peers: addrs[:2], Secret: secret, StartTimeout: 30 * time.Second, Logger: log})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d with the secret: %v", i+1, err)
		}
		defer nodes[i].Close()
	}
	intruder, err := Start(Options{Name: "n3", Dir: filepath.Join(dir, "3"), Listen: addrs[2], Peers: addrs,
		Secret: wrong, Replicas: 1, StartTimeout: 3 * time.Second, Logger: log})
	if err == nil {
		defer intruder.Close()
		time.Sleep(time.Second)
	}
	for i, n := range nodes {
		for _, p := range n.Peers() {
			if p.Name == "n3" {
				t.Errorf("n%d lists n3, which has another secret: %v", i+1, n.Peers())
			}
		}
		rz, err := n.ns.Routez(nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rz.Routes {
			if r.RemoteName == "n3" {
				t.Errorf("n%d has a route to n3, which has another secret", i+1)
			}
		}
	}
	if strings.Contains(logs.String(), "s3cr3t") || strings.Contains(logs.String(), wrong) {
		t.Error("a cluster secret is in the logs")
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A link to a node that is down is retried every second: the first failure is
// an error, the later ones debug lines, so a down node does not flood the log.
func TestRouteRetriesAreQuiet(t *testing.T) {
	var logs syncBuffer
	g := natsLogger{slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	for i := 1; i <= 5; i++ {
		g.Errorf("Error trying to connect to route (attempt %d): %v", i, "connection refused")
	}
	g.Errorf("something else broke")
	if n := strings.Count(logs.String(), "level=ERROR"); n != 2 {
		t.Errorf("%d error lines, want 2 (the first attempt and the other error):\n%s", n, logs.String())
	}
}
