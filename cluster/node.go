// Package cluster is what makes N copies of the server one chat: each node
// embeds a NATS server with JetStream (routes to the other nodes, the
// replicated store under <data>/cluster), talks to it in process, keeps a
// membership list from heartbeats, and places rooms on nodes by rendezvous
// hashing. It starts only in cluster mode (--cluster-peers); the single-node
// server never calls it.
package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pandachat/pandachat/internal/guard"
)

// Name is the NATS cluster name every node uses; nodes of another cluster
// name refuse the route.
const Name = "pandachat"

// Defaults of Options.
const (
	DefaultStartTimeout = time.Minute
	DefaultHeartbeat    = time.Second
	maxReplicas         = 3
	routeUser           = "pandachat" // with Options.Secret on the routes
)

// Options configure one node. The zero value of each field is its default;
// Dir is required.
type Options struct {
	// Name is this node's name, unique in the cluster (default: the host name).
	Name string
	// Listen is host:port for the routes between nodes. Empty: a node on its
	// own, with no routes (a one-node store, for tests).
	Listen string
	// Peers are host:port of every node's Listen; this node may be listed.
	Peers []string
	// Secret, when set, is what every node must present on the routes
	// between nodes (the same on all); a node without it cannot join.
	Secret string
	// Replicas is how many copies of each stream and bucket the cluster keeps
	// (default 3, or the number of nodes when fewer).
	Replicas int
	// Dir holds the replicated data (JetStream's store).
	Dir string
	// Sync fsyncs every write; otherwise JetStream syncs every 2 minutes and
	// replication is what survives a crash.
	Sync bool
	// StartTimeout bounds the wait for the cluster to form (default 1 minute).
	StartTimeout time.Duration
	// Heartbeat is how often the node says it is alive (default 1 s); a node
	// silent for 4 heartbeats is down.
	Heartbeat time.Duration
	// Logger receives NATS warnings and errors and the node's own events.
	Logger *slog.Logger
}

// Node is one running member of the cluster.
type Node struct {
	opts Options
	log  *slog.Logger
	ns   *server.Server
	nc   *nats.Conn
	js   jetstream.JetStream
	kv   jetstream.KeyValue // membership: node name → heartbeat

	lastBeat atomic.Int64 // unix nanos of the last heartbeat the cluster stored
	leaving  atomic.Bool  // Leave was called: down for placement and /readyz, still writing
	closing  atomic.Bool

	mu      sync.Mutex
	members map[string]member

	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// member is what this node knows of another (or itself) from the bucket.
type member struct {
	seen    time.Time // when its last heartbeat arrived here
	leaving bool      // it said goodbye
}

// apiTimeout bounds a JetStream API call of the node's client.
const apiTimeout = 5 * time.Second

// watchMembers starts the membership watch, for the node's life (a variable:
// a test makes it time out).
var watchMembers = func(kv jetstream.KeyValue) (jetstream.KeyWatcher, error) {
	return kv.WatchAll(context.Background())
}

// Start runs the embedded server, joins the cluster and waits until the
// replicated store takes writes (a quorum of the nodes is up), or fails after
// StartTimeout with an error that says what is missing.
func Start(o Options) (*Node, error) {
	if err := o.fill(); err != nil {
		return nil, err
	}
	sopts, err := o.serverOptions()
	if err != nil {
		return nil, err
	}
	ns, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	ns.SetLoggerV2(natsLogger{o.Logger}, false, false, false)
	ns.Start()
	n := &Node{opts: o, log: o.Logger, ns: ns, members: map[string]member{}, stop: make(chan struct{})}
	fail := func(err error) (*Node, error) {
		if n.nc != nil {
			n.nc.Close()
		}
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, err
	}
	if !ns.ReadyForConnections(o.StartTimeout) {
		return fail(fmt.Errorf("cluster: the embedded NATS server did not start within %s", o.StartTimeout))
	}
	n.nc, err = nats.Connect("", nats.InProcessServer(ns), nats.Token(sopts.Authorization), nats.Name("pandachat "+o.Name),
		nats.NoCallbacksAfterClientClose(),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			o.Logger.Warn("cluster: connection error", "err", err)
		}))
	if err != nil {
		return fail(fmt.Errorf("cluster: connect to the embedded server: %w", err))
	}
	n.js, err = jetstream.New(n.nc, jetstream.WithDefaultTimeout(apiTimeout))
	if err != nil {
		return fail(fmt.Errorf("cluster: %w", err))
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.StartTimeout)
	defer cancel()
	// API calls hang while the cluster has no JetStream leader: wait for one
	// in the server's own state first (it takes 0.1 to 6 s after a quorum
	// of the nodes is up).
	for !ns.JetStreamIsCurrent() {
		select {
		case <-ctx.Done():
			return fail(n.startError(errors.New("no JetStream leader elected")))
		case <-time.After(50 * time.Millisecond):
		}
	}
	err = Retry(ctx, o.Logger, "membership bucket", 2*time.Second, func(ctx context.Context) error {
		kv, err := n.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      "nodes",
			Description: "pandachat membership: node name → heartbeat",
			History:     1,
			TTL:         24 * time.Hour, // a node gone for a day leaves the list
			Storage:     jetstream.MemoryStorage,
			Replicas:    o.Replicas,
		})
		n.kv = kv
		return err
	})
	if err == nil {
		// A stream just made may drop the first writes until its leader
		// serves it: short attempts.
		err = Retry(ctx, o.Logger, "first heartbeat", time.Second, n.beat)
	}
	if err != nil {
		return fail(n.startError(err))
	}
	// The first view of the members is in before Start returns. The watch
	// lives as long as the node, so its context is not the attempt's: each
	// attempt ends at the client's API timeout, which a cluster still forming
	// can pass.
	var w jetstream.KeyWatcher
	err = Retry(ctx, o.Logger, "membership watch", apiTimeout, func(context.Context) error {
		w, err = watchMembers(n.kv)
		return err
	})
	if err != nil {
		return fail(n.startError(err))
	}
	n.follow(w, ctx.Done())
	n.wg.Add(2)
	go n.heartbeatLoop()
	go n.watchLoop(w)
	o.Logger.Info("cluster: node joined", "node", o.Name, "replicas", o.Replicas, "peers", len(o.Peers))
	return n, nil
}

// fill validates o and applies the defaults.
func (o *Options) fill() error {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Name == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("cluster: no node name given and the host name is unknown: %w", err)
		}
		o.Name = h
	}
	if err := checkName(o.Name); err != nil {
		return err
	}
	if o.Dir == "" {
		return errors.New("cluster: no data directory")
	}
	if o.Listen == "" && len(o.Peers) > 0 {
		return errors.New("cluster: --cluster-peers needs --cluster-listen (host:port for the links between nodes)")
	}
	nodes := map[string]bool{}
	if o.Listen != "" {
		if _, _, err := splitHostPort(o.Listen); err != nil {
			return fmt.Errorf("cluster: --cluster-listen %q: %w", o.Listen, err)
		}
		nodes[o.Listen] = true
	}
	for _, p := range o.Peers {
		if _, _, err := splitHostPort(p); err != nil {
			return fmt.Errorf("cluster: --cluster-peers entry %q: %w", p, err)
		}
		nodes[p] = true
	}
	switch {
	case len(nodes) == 0: // a store of its own, no routes (tests)
		nodes["self"] = true
	case len(nodes) == 1:
		// JetStream's Raft groups wait for a route before they elect a
		// leader: a node that lists only itself would never start.
		return errors.New("cluster: --cluster-peers lists no node but this one: cluster mode needs at least two nodes (one node alone runs without the cluster flags)")
	}
	switch {
	case o.Replicas == 0:
		o.Replicas = min(maxReplicas, len(nodes))
	case o.Replicas < 0 || o.Replicas > 5:
		return fmt.Errorf("cluster: --cluster-replicas %d: want 1 to 5", o.Replicas)
	case o.Replicas > len(nodes):
		return fmt.Errorf("cluster: --cluster-replicas %d but only %d nodes are listed", o.Replicas, len(nodes))
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = DefaultStartTimeout
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = DefaultHeartbeat
	}
	return nil
}

// checkName accepts names that NATS takes as a server name and as a key.
func checkName(name string) error {
	ok := len(name) <= 64 && name[0] != '.' && name[len(name)-1] != '.' && !strings.Contains(name, "..")
	for _, c := range name {
		ok = ok && (c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.')
	}
	if !ok {
		return fmt.Errorf("cluster: node name %q: want 1-64 of A-Z a-z 0-9 - _ . (dots between the other characters)", name)
	}
	return nil
}

func splitHostPort(hp string) (string, int, error) {
	host, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, fmt.Errorf("port %q: want 1-65535", p)
	}
	return host, port, nil
}

// serverOptions are the embedded server's: JetStream on, no client port (the
// node connects in process), routes to the peers, no signal handlers.
func (o *Options) serverOptions() (*server.Options, error) {
	// The node talks to its server in process, but the server starts its
	// routes only once its client listener is up: it gets one on a random
	// loopback port, closed to anyone without this process's random token.
	token := make([]byte, 24)
	if _, err := rand.Read(token); err != nil {
		return nil, err
	}
	s := &server.Options{
		ServerName:    o.Name,
		Host:          "127.0.0.1",
		Port:          server.RANDOM_PORT,
		Authorization: hex.EncodeToString(token),
		JetStream:     true,
		StoreDir:      o.Dir,
		SyncAlways:    o.Sync,
		NoSigs:        true,
	}
	if o.Listen != "" {
		host, port, _ := splitHostPort(o.Listen)
		s.Cluster = server.ClusterOpts{Name: Name, Host: host, Port: port}
		for _, p := range o.Peers {
			u := &url.URL{Scheme: "nats-route", Host: p}
			if o.Secret != "" {
				u.User = url.UserPassword(routeUser, o.Secret)
			}
			s.Routes = append(s.Routes, u)
		}
		if o.Secret != "" {
			s.Cluster.Username, s.Cluster.Password = routeUser, o.Secret
		}
	}
	if err := os.MkdirAll(o.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("cluster: data directory %s: %w", o.Dir, err)
	}
	return s, nil
}

// startError explains a start that timed out.
func (n *Node) startError(err error) error {
	if len(n.opts.Peers) > 0 {
		return fmt.Errorf("cluster: node %s did not join within %s (%d route connections to other nodes are up; %d copies of the data need %d nodes up, reachable at --cluster-peers): %w",
			n.opts.Name, n.opts.StartTimeout, n.ns.NumRoutes(), n.opts.Replicas, n.opts.Replicas/2+1, err)
	}
	return fmt.Errorf("cluster: the store did not start within %s: %w", n.opts.StartTimeout, err)
}

// Name is this node's name.
func (n *Node) Name() string { return n.opts.Name }

// Replicas is how many copies of each stream and bucket the cluster keeps.
func (n *Node) Replicas() int { return n.opts.Replicas }

// JetStream is the node's in-process JetStream client.
func (n *Node) JetStream() jetstream.JetStream { return n.js }

// Conn is the node's in-process connection (request/reply and fan-out subjects).
func (n *Node) Conn() *nats.Conn { return n.nc }

// Retry runs f until it succeeds, ctx ends, or it fails with an error that
// waiting does not cure; each attempt gets at most attempt. JetStream answers
// with such transient errors while the cluster forms or elects a leader.
func Retry(ctx context.Context, log *slog.Logger, what string, attempt time.Duration, f func(context.Context) error) error {
	wait := 50 * time.Millisecond
	for i := 0; ; i++ {
		actx, cancel := context.WithTimeout(ctx, attempt)
		err := f(actx)
		cancel()
		if err == nil {
			return nil
		}
		if !Transient(err) {
			return err
		}
		if i == 20 && log != nil {
			log.Warn("cluster: still waiting", "for", what, "err", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, err)
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// Transient reports whether err may go away by itself: no quorum yet, a
// leader election, a timeout.
func Transient(err error) bool {
	var api *jetstream.APIError
	if errors.As(err, &api) {
		switch {
		case api.Code == 503, api.Code == 408, api.Code == 500:
			return true
		case api.ErrorCode == jetstream.JSErrCodeJetStreamNotEnabled:
			return true
		case api.ErrorCode == 10005, strings.Contains(api.Description, "insufficient resources"):
			return true // no suitable peers for placement: the others are not known yet
		}
		return false
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, nats.ErrJetStreamNotEnabled)
}

// Leave is the first step of a planned stop: the node tells the others it is
// going (they take it off the live list, so placement moves its rooms at
// once), stops saying it is ready, and hands the leadership of every stream
// and bucket it leads to another node, waiting up to timeout for new
// leaders. The store keeps working through the new leaders until Close.
func (n *Node) Leave(timeout time.Duration) {
	if n.leaving.Swap(true) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := n.beat(ctx); err != nil {
		n.log.Warn("cluster: could not announce the departure", "err", err)
	}
	if !n.ns.JetStreamIsClustered() {
		return
	}
	var led []string
	names := n.js.StreamNames(ctx)
	for name := range names.Name() {
		if n.ns.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, name) {
			led = append(led, name)
			if err := n.ns.JetStreamStepdownStream(server.DEFAULT_GLOBAL_ACCOUNT, name); err != nil {
				n.log.Warn("cluster: leadership not handed over", "stream", name, "err", err)
			}
		}
	}
	for _, name := range led { // wait until another node leads it
		for n.ns.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, name) && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
	}
	n.log.Info("cluster: node leaving", "node", n.opts.Name, "handed over", len(led))
}

// Close leaves the cluster (Leave, when not done yet) and stops the embedded
// server, which hands over whatever it still leads (the JetStream meta
// group, a stream whose leadership came back) on its way out.
func (n *Node) Close() error {
	n.once.Do(func() {
		n.Leave(time.Second)
		n.closing.Store(true)
		close(n.stop)
		n.wg.Wait()
		n.nc.Close()
		n.ns.Shutdown()
		n.ns.WaitForShutdown()
		n.log.Info("cluster: node left", "node", n.opts.Name)
	})
	return nil
}

// heartbeatLoop writes this node's heartbeat every interval.
func (n *Node) heartbeatLoop() {
	defer n.wg.Done()
	defer guard.Recover(n.log, "cluster heartbeat", nil)
	t := time.NewTicker(n.opts.Heartbeat)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*n.opts.Heartbeat)
		err := n.beat(ctx)
		if err == nil {
			n.recheck(ctx)
		}
		cancel()
		switch {
		case err != nil && !failing:
			n.log.Warn("cluster: heartbeat not stored; the node stops taking writes until it is", "err", err)
		case err == nil && failing:
			n.log.Info("cluster: heartbeat stored again")
		}
		failing = err != nil
	}
}

// beat stores this node's heartbeat: its name and whether it is leaving.
func (n *Node) beat(ctx context.Context) error {
	if _, err := n.kv.Put(ctx, n.opts.Name, fmt.Appendf(nil, `{"leaving":%t}`, n.leaving.Load())); err != nil {
		return err
	}
	n.lastBeat.Store(time.Now().UnixNano())
	return nil
}

// recheck reads the heartbeat of every member the watch has not heard from
// for two heartbeats: a watch stalls for seconds while the bucket's leader
// moves, and a node must not count another down (and take its rooms) for
// that. The entry's time is when the cluster stored it.
func (n *Node) recheck(ctx context.Context) {
	now := time.Now()
	n.mu.Lock()
	var stale []string
	for name, m := range n.members {
		if name != n.opts.Name && !m.leaving && now.Sub(m.seen) > 2*n.opts.Heartbeat {
			stale = append(stale, name)
		}
	}
	n.mu.Unlock()
	for _, name := range stale {
		e, err := n.kv.Get(ctx, name)
		if err != nil {
			continue
		}
		n.mu.Lock()
		if m, ok := n.members[name]; ok && e.Created().After(m.seen) {
			m.seen, m.leaving = e.Created(), strings.Contains(string(e.Value()), `"leaving":true`)
			n.members[name] = m
		}
		n.mu.Unlock()
	}
}

// watchLoop keeps members up to date from the bucket, following w and then
// each new watcher when one ends (the connection or the leader went away).
func (n *Node) watchLoop(w jetstream.KeyWatcher) {
	defer n.wg.Done()
	defer guard.Recover(n.log, "cluster membership watch", nil)
	for {
		n.follow(w, nil)
		if n.closing.Load() {
			return // Stop would ask the cluster to delete the consumer: closing the connection ends it
		}
		_ = w.Stop()
		for {
			select {
			case <-n.stop:
				return
			case <-time.After(n.opts.Heartbeat):
			}
			var err error
			if w, err = n.kv.WatchAll(context.Background()); err == nil {
				break
			}
		}
	}
}

// follow applies the watcher's updates until it ends or the node stops; with
// a start channel, until the current values are all in or start is closed.
func (n *Node) follow(w jetstream.KeyWatcher, start <-chan struct{}) {
	initial := true
	for {
		select {
		case <-n.stop:
			return
		case <-start:
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e == nil { // the current values are all in
				if start != nil {
					return
				}
				initial = false
				continue
			}
			seen := time.Now()
			if initial {
				seen = e.Created()
			}
			n.mu.Lock()
			if e.Operation() != jetstream.KeyValuePut {
				delete(n.members, e.Key())
			} else {
				n.members[e.Key()] = member{seen: seen, leaving: strings.Contains(string(e.Value()), `"leaving":true`)}
			}
			n.mu.Unlock()
		}
	}
}

// Ready says whether this node can write: its last heartbeat was stored by a
// quorum of the cluster recently. It is nil when the node may take posts.
func (n *Node) Ready() error {
	if n.leaving.Load() {
		return errors.New("the node is leaving the cluster")
	}
	last := n.lastBeat.Load()
	if since := time.Since(time.Unix(0, last)); since > n.downAfter() {
		return fmt.Errorf("no quorum: the last heartbeat was stored %s ago", since.Round(time.Millisecond))
	}
	return nil
}

func (n *Node) downAfter() time.Duration { return 4 * n.opts.Heartbeat }

// Peer is a node of the cluster as this node sees it.
type Peer struct {
	Name string `json:"name"`
	Up   bool   `json:"up"`
}

// Peers lists every node that heartbeated in the last day, this one
// included, sorted by name. A node is up when its heartbeat is recent and it
// has not said goodbye; this node is up when it is Ready.
func (n *Node) Peers() []Peer {
	now := time.Now()
	n.mu.Lock()
	out := make([]Peer, 0, len(n.members)+1)
	self := false
	for name, m := range n.members {
		up := !m.leaving && now.Sub(m.seen) < n.downAfter()
		if name == n.opts.Name {
			up, self = n.Ready() == nil, true
		}
		out = append(out, Peer{Name: name, Up: up})
	}
	n.mu.Unlock()
	if !self {
		out = append(out, Peer{Name: n.opts.Name, Up: n.Ready() == nil})
	}
	slices.SortFunc(out, func(a, b Peer) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Live is the names of the nodes that are up, sorted: the list rooms are
// placed over.
func (n *Node) Live() []string {
	var out []string
	for _, p := range n.Peers() {
		if p.Up {
			out = append(out, p.Name)
		}
	}
	return out
}

// Owner is the live node that owns room (see the package function Owner).
func (n *Node) Owner(room string) string { return Owner(room, n.Live()) }

// natsLogger passes the embedded server's warnings and errors to slog, and
// its notices at debug level; its debug and trace lines are dropped.
type natsLogger struct{ l *slog.Logger }

func (g natsLogger) Noticef(f string, a ...any) {
	if g.l.Enabled(context.Background(), slog.LevelDebug) {
		g.l.Debug(fmt.Sprintf(f, a...), "lib", "nats")
	}
}
func (natsLogger) Debugf(string, ...any) {}
func (natsLogger) Tracef(string, ...any) {}
func (g natsLogger) Warnf(f string, a ...any) {
	g.l.Warn(fmt.Sprintf(f, a...), "lib", "nats")
}
func (g natsLogger) Errorf(f string, a ...any) {
	msg := fmt.Sprintf(f, a...)
	// A node that is down is dialled every second: its first failure says so,
	// the rest go to debug instead of an error a second per link.
	if strings.HasPrefix(msg, "Error trying to connect to route") && !strings.Contains(msg, "(attempt 1)") {
		g.l.Debug(msg, "lib", "nats")
		return
	}
	g.l.Error(msg, "lib", "nats")
}
func (g natsLogger) Fatalf(f string, a ...any) {
	g.l.Error(fmt.Sprintf(f, a...), "lib", "nats", "fatal", true)
}
