package server_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pandachat/pandachat/actors"
	"github.com/pandachat/pandachat/cluster"
	"github.com/pandachat/pandachat/internal/chattest"
	"github.com/pandachat/pandachat/server"
)

// startCluster runs n nodes in this process, each with its own data directory.
func startCluster(t *testing.T, n int, edit func(*server.Config)) ([]*server.Server, []*chattest.Env) {
	t.Helper()
	var addrs []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, l.Addr().String())
		l.Close()
	}
	srvs := make([]*server.Server, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		cfg := server.Config{
			Addr: "127.0.0.1:0", DataDir: t.TempDir(), DevLogin: true, DevLoginRate: actors.Rate{Off: true},
			Rate: actors.Rate{Off: true}, Grace: 5 * time.Second,
			NodeName: fmt.Sprintf("n%d", i+1), ClusterListen: addrs[i], ClusterPeers: addrs,
		}
		if os.Getenv("PANDA_TEST_LOG") != "" {
			cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("node", cfg.NodeName)
		}
		if edit != nil {
			edit(&cfg)
		}
		wg.Add(1)
		go func() { // each waits for a quorum before New returns
			defer wg.Done()
			srvs[i], errs[i] = server.New(cfg)
		}()
	}
	wg.Wait()
	var envs []*chattest.Env
	for i, s := range srvs {
		if errs[i] != nil {
			t.Fatalf("node %d: %v", i+1, errs[i])
		}
		if err := s.Listen(); err != nil {
			t.Fatal(err)
		}
		go func() { _ = s.Serve() }()
		t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
		envs = append(envs, chattest.Remote(t, s.URL()))
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
	return srvs, envs
}

// Members of one room on three nodes are one chat: one id sequence, the same
// order everywhere, each sender's echo with its cid on its own socket,
// counts over every node, presence across nodes, and replay with since on
// any node.
func TestClusterOneChat(t *testing.T) {
	_, envs := startCluster(t, 3, nil)
	users := []chattest.Session{envs[0].DevLogin("a"), envs[0].DevLogin("b"), envs[0].DevLogin("c")}
	var clients []*chattest.Client
	var nums []float64
	for i, env := range envs {
		c := env.Dial(users[i], "room=one&presence=1")
		n, _ := c.NextOfType("system")["num"].(float64)
		if n < 1 || n > float64(i+1) {
			t.Errorf("system frame on n%d: num %v, want 1..%d", i+1, n, i+1)
		}
		clients, nums = append(clients, c), append(nums, n)
	}
	// Counts travel between nodes: every member is told, by presence frames,
	// until each sees the three members on the three nodes.
	for i, c := range clients {
		for nums[i] != 3 {
			m := c.NextOfType("presence")
			if m["event"] != "join" {
				t.Fatalf("n%d: %v before the count reached 3", i+1, m)
			}
			nums[i], _ = m["num"].(float64)
		}
	}

	const each = 20
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range each {
				c.Send(map[string]any{"text": true, "content": fmt.Sprintf("%d-%d", i, k), "cid": fmt.Sprintf("c%d-%d", i, k)})
			}
		}()
	}
	wg.Wait()
	views := make([][]chattest.Chat, len(clients))
	for i, c := range clients {
		for len(views[i]) < each*len(clients) {
			m := c.NextChat()
			if m.Type == "presence" {
				continue
			}
			views[i] = append(views[i], m)
		}
	}
	for i, view := range views {
		own := 0
		for k, m := range view {
			if m.ID != uint64(k+1) {
				t.Fatalf("n%d: frame %d has id %d (%s), want %d: one gap-free sequence", i+1, k, m.ID, m, k+1)
			}
			if m.Content != views[0][k].Content {
				t.Fatalf("n%d: id %d is %q, n1 has %q: one order everywhere", i+1, m.ID, m.Content, views[0][k].Content)
			}
			if m.Number != 3 {
				t.Errorf("n%d: id %d has number %d, want 3 members over the nodes", i+1, m.ID, m.Number)
			}
			mine := m.Content[:1] == fmt.Sprint(i)
			switch {
			case mine && (m.Type != "user" || m.CID != "c"+m.Content):
				t.Errorf("n%d: own message %s: type %s cid %q, want user with cid c%s", i+1, m, m.Type, m.CID, m.Content)
			case !mine && (m.Type != "remote" || m.CID != ""):
				t.Errorf("n%d: other's message %s: type %s cid %q, want remote without cid", i+1, m, m.Type, m.CID)
			}
			if mine {
				own++
			}
		}
		if own != each {
			t.Errorf("n%d: %d own echoes, want %d", i+1, own, each)
		}
	}

	// A re-sent cid on another node is answered with the original id, stored once.
	again := envs[2].Dial(users[0], "room=one")
	again.NextOfType("system")
	again.Send(map[string]any{"text": true, "content": "0-0", "cid": "c0-0"})
	if m := again.NextChat(); m.ID != views[0][indexOf(views[0], "0-0")].ID || m.CID != "c0-0" || m.Type != "user" {
		t.Errorf("re-send of c0-0 on n3: %s cid %q, want the original's echo", m, m.CID)
	}

	// Replay with since on every node gives what the room holds after it.
	for i, env := range envs {
		c := env.Dial(users[i], "room=one&since=50")
		c.NextOfType("system")
		for id := uint64(51); id <= 60; id++ {
			if m := c.NextChat(); m.ID != id || m.Content != views[0][id-1].Content {
				t.Fatalf("replay on n%d: %s, want id %d %q", i+1, m, id, views[0][id-1].Content)
			}
		}
	}

	// A leave on one node is counted on the others.
	clients[2].Conn.WriteClose(1000, nil)
	for {
		if m := clients[0].NextOfType("presence"); m["event"] == "leave" {
			if m["uid"] != clients2UID(t, envs[0], users[2]) {
				t.Errorf("n1 saw %v, want the leave of c on n3", m)
			}
			break
		}
	}
}

func clients2UID(t *testing.T, env *chattest.Env, s chattest.Session) any {
	var me map[string]any
	if code := env.Do(s, "GET", "/me", nil, &me); code != 200 {
		t.Fatalf("GET /me: %d", code)
	}
	return me["uid"]
}

func indexOf(view []chattest.Chat, content string) int {
	for i, m := range view {
		if m.Content == content {
			return i
		}
	}
	return -1
}

// Version 2 over nodes: typing notices, reactions and recalls made on one
// node reach members on the others; a refusal from the room's owner (a recall
// of another's message) comes back to the sender on its own node.
func TestClusterVersion2(t *testing.T) {
	_, envs := startCluster(t, 3, nil)
	sa, sb := envs[0].DevLogin("a"), envs[1].DevLogin("b")
	a := envs[0].Dial(sa, "room=v2&v=2")
	a.NextOfType("system")
	b := envs[1].Dial(sb, "room=v2&v=2")
	b.NextOfType("system")

	a.Send(map[string]any{"text": true, "content": "hello", "cid": "h"})
	if m := a.NextOfType("user"); m["id"] != float64(1) || m["cid"] != "h" {
		t.Fatalf("echo on n1: %v", m)
	}
	if m := b.NextOfType("remote"); m["id"] != float64(1) {
		t.Fatalf("n2: %v", m)
	}
	b.Send(map[string]any{"typing": true})
	if m := a.NextOfType("typing"); m["nickName"] != "b" {
		t.Errorf("typing on n1: %v", m)
	}
	b.Send(map[string]any{"react": 1, "emoji": "👍", "cid": "r"})
	for _, c := range []*chattest.Client{a, b} {
		if m := c.NextOfType("reaction"); m["target"] != float64(1) || m["emoji"] != "👍" || m["on"] != true || m["id"] != float64(2) {
			t.Errorf("reaction: %v", m)
		}
	}
	b.Send(map[string]any{"recall": 1, "cid": "x"})
	if m := b.NextOfType("error"); m["error"] != "ERR_NOT_ALLOWED" || m["cid"] != "x" {
		t.Errorf("b recalling a's message: %v, want ERR_NOT_ALLOWED with its cid", m)
	}
	a.Send(map[string]any{"recall": 1, "cid": "y"})
	for _, c := range []*chattest.Client{a, b} {
		if m := c.NextOfType("recall"); m["target"] != float64(1) || m["id"] != float64(3) {
			t.Errorf("recall: %v", m)
		}
	}
	var hist []map[string]any
	if code := envs[2].Do(sa, "GET", "/history?room=v2&v=2", nil, &hist); code != 200 || len(hist) != 1 || hist[0]["recalled"] != true || hist[0]["content"] != nil {
		t.Errorf("history on n3: %d %v, want message 1 recalled, without content", code, hist)
	}
}

// Batches bigger than a NATS message (1 MB) reach the other nodes too: the
// owner publishes them in pieces, and nothing has to be read back from the store.
func TestClusterBigBatches(t *testing.T) {
	var logs chattest.SyncBuffer
	_, envs := startCluster(t, 3, func(c *server.Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
		c.MaxContent, c.ReadLimit = 20000, 256<<10
	})
	owner := cluster.Owner("big", []string{"n1", "n2", "n3"})
	on := int(owner[1] - '1')
	s := envs[on].DevLogin("big")
	far := envs[(on+1)%3].Dial(s, "room=big")
	far.NextOfType("system")
	c := envs[on].Dial(s, "room=big")
	c.NextOfType("system")
	text := strings.Repeat("中", 20000) // 60 kB stored
	const n = 60
	for k := range n {
		c.Send(map[string]any{"text": true, "content": text, "cid": fmt.Sprint(k)})
	}
	for k := 1; k <= n; k++ {
		if m := far.NextChat(); m.ID != uint64(k) || len(m.Content) != len(text) {
			t.Fatalf("far member: id %d (%d bytes), want %d", m.ID, len(m.Content), k)
		}
	}
	if strings.Contains(logs.String(), "could not tell the other nodes") {
		t.Errorf("a batch did not reach the other nodes:\n%s", logs.String())
	}
}
