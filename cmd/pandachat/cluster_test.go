package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pandachat/pandachat/internal/chattest"
)

// Three copies of the binary on loopback share one replicated store: a
// session made on one node is valid on the others, /cluster lists all three,
// /readyz is 200 on each, and what one node writes (a profile, a ticket, an
// image, a room's messages) another reads. A node stopped with SIGTERM
// leaves cleanly while the others go on.
func TestThreeNodeCluster(t *testing.T) {
	var listen []string
	for range 3 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		listen = append(listen, l.Addr().String())
		l.Close()
	}
	start := time.Now()
	nodes := startNodes(t, listen)
	t.Logf("three nodes listening %s after start", time.Since(start).Round(time.Millisecond))
	a, b, c := chattest.Remote(t, nodes[0].url), chattest.Remote(t, nodes[1].url), chattest.Remote(t, nodes[2].url)

	want := []map[string]any{{"name": "n1", "up": true}, {"name": "n2", "up": true}, {"name": "n3", "up": true}}
	for i, env := range []*chattest.Env{a, b, c} {
		var got struct {
			Node  string           `json:"node"`
			Peers []map[string]any `json:"peers"`
		}
		eventually(t, fmt.Sprintf("GET /cluster on n%d lists three nodes up", i+1), func() bool {
			got.Peers = nil
			return getJSON(env.URL+"/cluster", &got) == 200 && reflect.DeepEqual(got.Peers, want)
		})
		if got.Node != fmt.Sprintf("n%d", i+1) {
			t.Errorf("n%d: /cluster says node %q", i+1, got.Node)
		}
		if code := getJSON(env.URL+"/readyz", nil); code != 200 {
			t.Errorf("n%d: /readyz = %d", i+1, code)
		}
	}

	// A session made on node 1 is valid on node 3; a profile set on node 2 is read on node 1.
	s := a.DevLogin("mei")
	var me map[string]any
	if code := c.Do(s, "GET", "/me", nil, &me); code != 200 || me["nickName"] != "mei" {
		t.Fatalf("GET /me on n3 with a session from n1: %d %v", code, me)
	}
	if code := b.Do(s, "POST", "/profile", map[string]string{"nickName": "Mei Mei"}, nil); code != 200 {
		t.Fatalf("POST /profile on n2: %d", code)
	}
	if code := a.Do(s, "GET", "/me", nil, &me); code != 200 || me["nickName"] != "Mei Mei" {
		t.Errorf("GET /me on n1 after n2 changed the profile: %d %v", code, me)
	}

	// A ticket issued on node 1 opens a socket on node 3 once.
	var tk struct{ Ticket string }
	if code := a.Do(s, "POST", "/ws-ticket", nil, &tk); code != 200 || tk.Ticket == "" {
		t.Fatalf("POST /ws-ticket on n1: %d", code)
	}
	ws, err := c.DialBare("room=cluster&ticket=" + tk.Ticket)
	if err != nil {
		t.Fatalf("socket on n3 with a ticket from n1: %v", err)
	}
	ws.NextOfType("system")
	// Used: on node 2 the same ticket opens nothing (the socket is refused and closed 1008).
	if again, err := b.DialBare("room=cluster&ticket=" + tk.Ticket); err == nil {
		if m := again.Next(); m["error"] != "ERR_INVALID_SESSION" {
			t.Errorf("a used ticket on n2: frame %v, want ERR_INVALID_SESSION", m)
		}
		if code := again.Closed(); code != 1008 {
			t.Errorf("a used ticket on n2: close %d, want 1008", code)
		}
	}

	// Media uploaded on node 1 is known on node 3: a gallery message there
	// may point at it. Messages posted on node 3 are history on node 1.
	status, up := a.Upload(s, "cat.png", chattest.PNG(8, 8))
	if status != 200 {
		t.Fatalf("upload on n1: %d %v", status, up)
	}
	path := "/media/" + up["url"].(string)[strings.LastIndex(up["url"].(string), "/")+1:]
	ws.Send(map[string]any{"text": true, "content": "hello from n3"})
	ws.Send(map[string]any{"gallery": true, "url": path})
	if m := ws.NextChat(); m.Type != "user" || m.Content != "hello from n3" {
		t.Fatalf("echo on n3 = %v", m)
	}
	if m := ws.NextChat(); m.Type != "user" || m.URL != nodes[2].url+path {
		t.Fatalf("gallery echo on n3 = %v %q, want the url %s (media of n1, known on n3)", m, m.URL, nodes[2].url+path)
	}
	var hist []map[string]any
	if code := a.Do(s, "GET", "/history?room=cluster", nil, &hist); code != 200 || len(hist) != 2 ||
		hist[0]["content"] != "hello from n3" || hist[1]["url"] != nodes[0].url+path {
		t.Errorf("GET /history on n1: %d %v", code, hist)
	}

	// An image uploaded on node 1 is served by nodes 2 and 3 byte for byte,
	// from the object store every node reads; an unknown id is 404 there.
	img := chattest.PNG(300, 200) // about 240 KB: more than one chunk
	status, up = a.Upload(s, "big.png", img)
	if status != 200 {
		t.Fatalf("upload on n1: %d %v", status, up)
	}
	for i, env := range []*chattest.Env{b, c} {
		got, h, code := getBytes(t, env.URL+"/media/"+up["id"].(string))
		if code != 200 || !bytes.Equal(got, img) || h.Get("Content-Type") != "image/png" || h.Get("ETag") != `"`+up["id"].(string)+`"` {
			t.Errorf("GET of n1's upload on n%d: %d, %d bytes (want %d), %v", i+2, code, len(got), len(img), h)
		}
	}
	if body, _, code := getBytes(t, b.URL+"/media/"+strings.Repeat("0", 64)); code != 404 || !strings.Contains(string(body), "ERR_NOT_FOUND") {
		t.Errorf("GET of an unknown id on n2: %d %s, want 404", code, body)
	}

	// SIGTERM on node 3: its socket gets 1001, it exits cleanly, the others stay ready.
	if err := nodes[2].cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := nodes[2].wait(t); err != nil {
		t.Fatalf("n3 after SIGTERM: %v\n%s", err, nodes[2].log())
	}
	if !strings.Contains(nodes[2].log(), "stopped cleanly") {
		t.Errorf("n3 did not stop cleanly:\n%s", nodes[2].log())
	}
	for i, env := range []*chattest.Env{a, b} {
		eventually(t, fmt.Sprintf("n%d is ready with two of three nodes", i+1), func() bool {
			return getJSON(env.URL+"/readyz", nil) == 200
		})
		var got struct{ Peers []map[string]any }
		eventually(t, fmt.Sprintf("n%d sees n3 down", i+1), func() bool {
			return getJSON(env.URL+"/cluster", &got) == 200 && len(got.Peers) == 3 && got.Peers[2]["up"] == false
		})
	}
	if code := b.Do(s, "GET", "/me", nil, &me); code != 200 {
		t.Errorf("GET /me on n2 with two of three nodes: %d", code)
	}
}

// startNodes starts one node per listen address, all at once (each waits for
// a quorum of the others before it listens), with dev login on.
func startNodes(t *testing.T, listen []string) []*proc {
	t.Helper()
	procs := make([]*proc, len(listen))
	urls := make([]<-chan string, len(listen))
	for i := range listen {
		cmd := exec.Command(binary, "serve", "--addr", "127.0.0.1:0", "--data", t.TempDir(),
			"--dev-login=true", "--dev-login-rate", "off", "--grace", "5s",
			"--node-name", fmt.Sprintf("n%d", i+1), "--cluster-listen", listen[i],
			"--cluster-peers", strings.Join(listen, ","))
		procs[i], urls[i] = spawn(t, cmd)
	}
	deadline := time.After(90 * time.Second)
	for i, p := range procs {
		select {
		case p.url = <-urls[i]:
		case err := <-p.exited:
			t.Fatalf("n%d exited before listening: %v\n%s", i+1, err, p.log())
		case <-deadline:
			t.Fatalf("n%d did not start:\n%s", i+1, p.log())
		}
	}
	return procs
}

// getJSON GETs url and decodes its JSON answer into out (when not nil).
func getJSON(url string, out any) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	if out != nil && json.NewDecoder(resp.Body).Decode(out) != nil {
		return 0
	}
	return resp.StatusCode
}

// getBytes GETs url and returns the body, the headers and the status.
func getBytes(t *testing.T, url string) ([]byte, http.Header, int) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return body, resp.Header, resp.StatusCode
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
