package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pandachat/pandachat/actors"
	"github.com/pandachat/pandachat/cluster"
	"github.com/pandachat/pandachat/internal/chattest"
	"github.com/pandachat/pandachat/server"
)

func TestClusterSettingsNeedPeers(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  server.Config
		want string
	}{
		{"listen without peers", server.Config{ClusterListen: "127.0.0.1:7001"}, "need --cluster-peers"},
		{"replicas without peers", server.Config{ClusterReplicas: 3}, "need --cluster-peers"},
		{"secret without peers", server.Config{ClusterSecret: "x"}, "need --cluster-peers"},
		{"memory store in a cluster", server.Config{Store: "memory", ClusterListen: "127.0.0.1:7001", ClusterPeers: []string{"127.0.0.1:7001"}}, "do not go together"},
		{"peers without listen", server.Config{ClusterPeers: []string{"127.0.0.1:7001"}}, "needs --cluster-listen"},
		{"only itself", server.Config{ClusterListen: "127.0.0.1:7001", ClusterPeers: []string{"127.0.0.1:7001"}}, "at least two nodes"},
	} {
		tt.cfg.DataDir = t.TempDir()
		if s, err := server.New(tt.cfg); err == nil {
			_ = s.Shutdown(t.Context())
			t.Errorf("%s: started", tt.name)
		} else if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want it to say %q", tt.name, err, tt.want)
		}
	}
}

// Two nodes in this process share the replicated store: a session made on
// one is valid on the other, a message posted on one is history on the other,
// /cluster lists both. With two copies a quorum is both nodes: when one stops,
// the other's /readyz turns 503 and says why.
func TestTwoNodes(t *testing.T) {
	srvs, envs := startCluster(t, 2, func(c *server.Config) { c.Rate = actors.Rate{} })
	a, b := envs[0], envs[1]

	for i, env := range envs {
		var got struct {
			Node  string
			Peers []cluster.Peer
		}
		if code := getJSON(t, env.URL+"/cluster", &got); code != 200 || got.Node != fmt.Sprintf("n%d", i+1) ||
			!reflect.DeepEqual(got.Peers, []cluster.Peer{{Name: "n1", Up: true}, {Name: "n2", Up: true}}) {
			t.Errorf("GET /cluster on n%d = %d %+v", i+1, code, got)
		}
		if code := getJSON(t, env.URL+"/readyz", nil); code != 200 {
			t.Errorf("GET /readyz on n%d = %d", i+1, code)
		}
	}

	s := a.DevLogin("mei")
	var me map[string]any
	if code := b.Do(s, "GET", "/me", nil, &me); code != 200 || me["nickName"] != "mei" {
		t.Fatalf("GET /me on n2 with a session from n1: %d %v", code, me)
	}
	c := b.Dial(s, "room=two")
	c.NextOfType("system")
	c.Send(map[string]any{"text": true, "content": "hi"})
	if m := c.NextChat(); m.Type != "user" || m.ID != 1 {
		t.Fatalf("echo on n2 = %v", m)
	}
	var hist []map[string]any
	if code := a.Do(s, "GET", "/history?room=two", nil, &hist); code != 200 || len(hist) != 1 || hist[0]["content"] != "hi" {
		t.Errorf("history on n1 = %d %v", code, hist)
	}

	if err := srvs[1].Shutdown(context.Background()); err != nil {
		t.Errorf("n2 shutdown: %v", err)
	}
	var ready map[string]any
	deadline := time.Now().Add(15 * time.Second)
	// The store's reads fail at once; the node notices the lost quorum within
	// its heartbeat window, and from then on /readyz says so.
	for {
		code := getJSON(t, a.URL+"/readyz", &ready)
		reason, _ := ready["reason"].(string)
		if code == http.StatusServiceUnavailable && strings.Contains(reason, "no quorum") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n1 alone (two copies, quorum two): /readyz %d %v, want 503 saying no quorum", code, ready)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func getJSON(t *testing.T, url string, out any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
	}
	return resp.StatusCode
}

// Without cluster flags there is no /cluster route and no node.
func TestNoClusterWithoutPeers(t *testing.T) {
	env := chattest.Start(t, server.Config{Store: "memory"})
	if env.Srv.Node() != nil {
		t.Fatal("a cluster node without --cluster-peers")
	}
	resp, err := http.Get(env.URL + "/cluster")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == 200 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Errorf("GET /cluster answered JSON on a single node")
	}
}
