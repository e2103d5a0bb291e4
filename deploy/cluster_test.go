package deploy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pandachat/pandachat/actors"
	"github.com/pandachat/pandachat/internal/chattest"
	"github.com/pandachat/pandachat/server"
)

// TestNginxInFrontOfThreeNodes runs deploy/nginx-cluster.conf in front of a
// cluster of three nodes: two clients land on two nodes and chat; the node of
// one of them stops; that client reconnects through the same nginx with since,
// lands on a node that is up and gets what it missed.
func TestNginxInFrontOfThreeNodes(t *testing.T) {
	if _, err := os.Stat(nginxBin); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing: CI must install the nginx package", nginxBin)
		}
		t.Skipf("%s not installed (apt-get install nginx); skipping the reverse-proxy test", nginxBin)
	}
	srvs := startCluster(t, 3)
	var ups []replacement
	for i, s := range srvs {
		ups = append(ups, replacement{fmt.Sprintf("server 10.0.0.%d:8765 ", i+1), "server " + strings.TrimPrefix(s.URL(), "http://") + " "})
	}
	origin := startNginxConf(t, "nginx-cluster.conf", ups...)
	p := chattest.RemoteTLS(t, origin.https, origin.pool)

	alice, bob := p.DevLogin("alice"), p.DevLogin("bob")
	a := p.Dial(alice, "room=nodes")
	a.NextOfType("system")
	an := nodeWithSockets(t, srvs, nil)
	b := p.Dial(bob, "room=nodes")
	b.NextOfType("system")
	bn := nodeWithSockets(t, srvs, []int{an})
	t.Logf("alice on n%d, bob on n%d", an+1, bn+1)

	a.Send(map[string]any{"text": true, "content": "hello", "cid": "a1"})
	echo := a.NextChat()
	if echo.Type != "user" || echo.Content != "hello" {
		t.Fatalf("alice's echo: %v", echo)
	}
	if m := b.NextChat(); m.Type != "remote" || m.Content != "hello" || m.ID != echo.ID {
		t.Fatalf("bob on another node got %v, want remote #%d hello", m, echo.ID)
	}

	// Alice's node stops (SIGTERM's path): her socket closes with 1001.
	if err := srvs[an].Shutdown(context.Background()); err != nil {
		t.Fatalf("n%d shutdown: %v", an+1, err)
	}
	if code := a.Closed(); code != 1001 {
		t.Fatalf("alice's socket closed with %d, want 1001", code)
	}
	// Bob posts meanwhile; a client re-sends a refused post with its cid.
	var missed uint64
	for try := 0; missed == 0; try++ {
		b.Send(map[string]any{"text": true, "content": "while you were away", "cid": "b1"})
		switch m := b.NextChat(); {
		case m.Type == "user" && m.Content == "while you were away":
			missed = m.ID
		case m.Error == "ERR_UNAVAILABLE" && try < 20:
			time.Sleep(500 * time.Millisecond)
		default:
			t.Fatalf("bob's post after n%d stopped: %v %s", an+1, m, m.Error)
		}
	}
	// Alice comes back through nginx, which skips the stopped node.
	a2 := p.Dial(alice, fmt.Sprintf("room=nodes&since=%d", echo.ID))
	a2.NextOfType("system")
	if m := a2.NextChat(); m.Type != "remote" || m.ID != missed || m.Content != "while you were away" {
		t.Fatalf("alice's replay after reconnecting: %v, want remote #%d", m, missed)
	}
	if n := nodeWithSockets(t, srvs, []int{an, bn}); n == an {
		t.Fatalf("alice reconnected to the stopped node")
	}
}

// nodeWithSockets waits until a node not in skip holds an open socket and
// returns its index. Stopped nodes are never asked.
func nodeWithSockets(t *testing.T, srvs []*server.Server, skip []int) int {
	t.Helper()
	deadline := time.Now().Add(chattest.Wait)
	for {
		for i, s := range srvs {
			if slices.Contains(skip, i) {
				continue
			}
			var r struct{ Connections int }
			resp, err := http.Get(s.URL() + "/readyz")
			if err != nil {
				continue
			}
			_ = json.NewDecoder(resp.Body).Decode(&r)
			resp.Body.Close()
			if r.Connections > 0 {
				return i
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no node but %v holds a socket", skip)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startCluster runs n nodes in this process, each with its own data directory.
func startCluster(t *testing.T, n int) []*server.Server {
	t.Helper()
	var addrs []string
	for range n {
		addrs = append(addrs, "127.0.0.1:"+freePort(t))
	}
	srvs := make([]*server.Server, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		cfg := server.Config{
			Addr: "127.0.0.1:0", DataDir: t.TempDir(), DevLogin: true, DevLoginRate: actors.Rate{Off: true},
			Rate: actors.Rate{Off: true}, Grace: 5 * time.Second, TrustProxy: true,
			NodeName: fmt.Sprintf("n%d", i+1), ClusterListen: addrs[i], ClusterPeers: addrs,
		}
		wg.Go(func() { srvs[i], errs[i] = server.New(cfg) }) // each waits for a quorum
	}
	wg.Wait()
	for i, s := range srvs {
		if errs[i] != nil {
			t.Fatalf("node %d: %v", i+1, errs[i])
		}
		if err := s.Listen(); err != nil {
			t.Fatal(err)
		}
		go func() { _ = s.Serve() }()
		t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	}
	for i, s := range srvs { // every node sees every other up
		deadline := time.Now().Add(chattest.Wait)
		for len(s.Node().Live()) < n {
			if time.Now().After(deadline) {
				t.Fatalf("n%d sees %v live", i+1, s.Node().Live())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return srvs
}

// TestNginxClusterConfIsTheSingleNodeOne keeps the two site files from
// drifting apart: outside the header comment, the upstream block and the
// failover lines they are the same.
func TestNginxClusterConfIsTheSingleNodeOne(t *testing.T) {
	strip := func(file string) string {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		s = s[strings.Index(s, "\nmap "):]                                                                    // the header comment
		s = regexp.MustCompile(`(?s)\n(# [^\n]*\n)*upstream pandachat \{.*?\n\}\n`).ReplaceAllString(s, "\n") // the upstream
		s = regexp.MustCompile(`(?s)\n    # Failover between the nodes.*?\n\n`).ReplaceAllString(s, "\n")     // failover
		return s
	}
	one, many := strip("nginx.conf"), strip("nginx-cluster.conf")
	if one != many {
		t.Errorf("nginx-cluster.conf differs from nginx.conf beyond the upstream and failover lines; change both:\n--- nginx.conf\n%s\n--- nginx-cluster.conf\n%s", one, many)
	}
	c, _ := os.ReadFile("nginx-cluster.conf")
	for _, want := range []string{"least_conn;", "proxy_next_upstream       error timeout;", "proxy_connect_timeout     2s;", "server 10.0.0.3:8765 max_fails=1"} {
		if !strings.Contains(string(c), want) {
			t.Errorf("nginx-cluster.conf lacks %q", want)
		}
	}
}

// TestClusterUnitVerifies runs systemd-analyze on an instance of the template
// unit, with ExecStart pointed at a file that exists here.
func TestClusterUnitVerifies(t *testing.T) {
	unit, err := os.ReadFile("pandachat@.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"NoNewPrivileges=yes", "PrivateTmp=yes", "ProtectSystem=strict", "StateDirectory=pandachat/%i",
		"DynamicUser=yes", "ReadWritePaths=/var/lib/pandachat/%i", "LimitNOFILE=", "PANDA_NODE_NAME=%i",
		"PANDA_DATA=/var/lib/pandachat/%i", "EnvironmentFile=/etc/pandachat/cluster.env", "EnvironmentFile=/etc/pandachat/%i.env",
		"PANDA_CLUSTER_PEERS=", "PANDA_CLUSTER_LISTEN=", "KillSignal=SIGTERM",
	} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("unit lacks %s", want)
		}
	}
	// Lame duck (up to 2.6 s) and the grace period (10 s) fit in the stop timeout.
	if m := regexp.MustCompile(`TimeoutStopSec=(\d+)s`).FindStringSubmatch(string(unit)); m == nil || len(m[1]) < 2 || m[1] < "15" {
		t.Errorf("TimeoutStopSec %v: want at least 15 s", m)
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("systemd-analyze is missing: CI must install the systemd package")
		}
		t.Skip("systemd-analyze not installed (apt-get install systemd); skipping the unit check")
	}
	self, _ := os.Executable()
	u := strings.ReplaceAll(string(unit), "/usr/local/bin/pandachat", self)
	p := filepath.Join(t.TempDir(), "pandachat@n1.service")
	os.WriteFile(p, []byte(u), 0o644)
	if b, err := exec.Command(analyze, "verify", p).CombinedOutput(); err != nil || len(strings.TrimSpace(string(b))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, b)
	}
}

// TestComposeClusterIsConsistent reads deploy/compose.cluster.yaml: three
// nodes, each named as its service and host, listening for the others where
// every node's peer list says, on its own volume and port, with settings that
// are real flags of pandachat serve, built from the project's Dockerfile.
func TestComposeClusterIsConsistent(t *testing.T) {
	b, err := os.ReadFile("compose.cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	type svc struct {
		env            map[string]string
		lines          []string
		hostname, port string
	}
	svcs := map[string]*svc{}
	var names []string
	var cur *svc
	inServices := false
	for line := range strings.Lines(string(b)) {
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "services:":
			inServices = true
		case !strings.HasPrefix(line, " ") && line != "" && !strings.HasPrefix(line, "#"):
			inServices, cur = false, nil
		case inServices && regexp.MustCompile(`^  [a-z0-9]+:$`).MatchString(line):
			name := strings.TrimSuffix(strings.TrimSpace(line), ":")
			cur = &svc{env: map[string]string{}}
			svcs[name], names = cur, append(names, name)
		case cur != nil:
			cur.lines = append(cur.lines, strings.TrimSpace(line))
			if k, v, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(line), "- "), "="); ok && strings.HasPrefix(strings.TrimSpace(line), "- ") {
				cur.env[k] = v
			}
			if h, ok := strings.CutPrefix(strings.TrimSpace(line), "hostname: "); ok {
				cur.hostname = h
			}
			if m := regexp.MustCompile(`ports: \["127\.0\.0\.1:(\d+):8765"\]`).FindStringSubmatch(line); m != nil {
				cur.port = m[1]
			}
		}
	}
	if len(names) != 3 {
		t.Fatalf("services %v, want three nodes", names)
	}
	flags, err := os.ReadFile("../docs/operations.md") // the flag table is generated from pandachat serve's flags
	if err != nil {
		t.Fatal(err)
	}
	peers := svcs[names[0]].env["PANDA_CLUSTER_PEERS"]
	seen := map[string]bool{}
	for _, n := range names {
		s := svcs[n]
		if s.env["PANDA_NODE_NAME"] != n || s.hostname != n {
			t.Errorf("%s: node name %q, hostname %q; want both %q", n, s.env["PANDA_NODE_NAME"], s.hostname, n)
		}
		if s.env["PANDA_CLUSTER_PEERS"] != peers || !slices.Contains(strings.Split(peers, ","), s.env["PANDA_CLUSTER_LISTEN"]) {
			t.Errorf("%s: listens on %q, peers %q; want its address among the peers every node lists (%q)", n, s.env["PANDA_CLUSTER_LISTEN"], s.env["PANDA_CLUSTER_PEERS"], peers)
		}
		for _, want := range []string{"build: {context: .., dockerfile: Dockerfile}", "volumes: [\"" + n + "-data:/data\"]", "stop_grace_period: 20s", "ulimits: {nofile: 65536}"} {
			if !slices.Contains(s.lines, want) {
				t.Errorf("%s lacks %q", n, want)
			}
		}
		if s.port == "" || seen[s.port] {
			t.Errorf("%s: host port %q missing or used twice", n, s.port)
		}
		seen[s.port] = true
		for k := range s.env {
			if strings.HasPrefix(k, "PANDA_") && !strings.Contains(string(flags), "`"+k+"`") {
				t.Errorf("%s: %s is not a setting of pandachat serve", n, k)
			}
		}
	}
	if len(strings.Split(peers, ",")) != 3 {
		t.Errorf("peers %q: want the three nodes", peers)
	}
	if _, err := os.Stat("../Dockerfile"); err != nil {
		t.Error(err)
	}
	if _, _, err := net.SplitHostPort(svcs[names[0]].env["PANDA_CLUSTER_LISTEN"]); err != nil {
		t.Error(err)
	}
}
