package server_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/pandachat/pandachat/internal/chattest"
)

// A logout on one node closes the session's sockets on every node, not only
// on the node that took the logout.
func TestClusterLogoutClosesEverywhere(t *testing.T) {
	_, envs := startCluster(t, 2, nil)
	s := envs[0].DevLogin("leaving")
	here, there := envs[0].Dial(s, "room=bye"), envs[1].Dial(s, "room=bye")
	here.NextOfType("system")
	there.NextOfType("system")
	var out map[string]any
	if code := envs[0].Do(s, "POST", "/logout", nil, &out); code != 200 {
		t.Fatalf("logout: HTTP %d %v", code, out)
	}
	refusedSession(t, here, "the socket on the node of the logout")
	refusedSession(t, there, "the socket on the other node")
}

// A profile changed on one node is on the next messages of the user's
// sockets on the other nodes (within moments), not only on that node's.
func TestClusterProfileChangeReachesEveryNode(t *testing.T) {
	_, envs := startCluster(t, 2, nil)
	s := envs[0].DevLogin("before")
	there := envs[1].Dial(s, "room=prof")
	there.NextOfType("system")
	var me map[string]any
	if code := envs[0].Do(s, "POST", "/profile", map[string]any{"nickName": "after"}, &me); code != 200 || me["nickName"] != "after" {
		t.Fatalf("profile: HTTP %d %v", code, me)
	}
	deadline := time.Now().Add(chattest.Wait)
	for k := 0; ; k++ {
		there.Send(map[string]any{"text": true, "content": "hi", "cid": fmt.Sprint(k)})
		m := there.NextChat()
		if m.NickName == "after" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("messages from the other node still carry %q", m.NickName)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
