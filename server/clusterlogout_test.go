package server_test

import (
	"testing"
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
