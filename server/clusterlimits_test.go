package server_test

import (
	"testing"
	"time"

	"github.com/pandachat/pandachat/internal/chattest"
	"github.com/pandachat/pandachat/server"
)

// The per-user connection cap holds over the nodes: while n1 holds a user's
// cap, n2 refuses its next socket (once n1's count has reached it, within
// moments), and admits one again once n1 has released one.
func TestClusterConnectionCap(t *testing.T) {
	_, envs := startCluster(t, 2, func(c *server.Config) { c.MaxConnsPerUser = 2 })
	s := envs[0].DevLogin("many")
	var held []*chattest.Client
	for range 2 {
		c := envs[0].Dial(s, "")
		c.NextOfType("system")
		held = append(held, c)
	}
	// dial opens sockets of the user on env until one gets want ("system":
	// admitted, else the error); one that gets something else is closed.
	dial := func(env *chattest.Env, want string) *chattest.Client {
		t.Helper()
		deadline := time.Now().Add(chattest.Wait)
		for {
			c := env.Dial(s, "")
			m := c.NextChat()
			got := m.Type
			if m.Error != "" {
				got = m.Error
			}
			if got == want {
				return c
			}
			if time.Now().After(deadline) {
				t.Fatalf("a socket on %s got %+v until %s, want %s", env.URL, m, chattest.Wait, want)
			}
			_ = c.Conn.WriteClose(1000, nil)
			c.Closed()
			time.Sleep(20 * time.Millisecond)
		}
	}
	if code := dial(envs[1], "ERR_TOO_MANY_CONNECTIONS").Closed(); code != 1008 {
		t.Errorf("refused socket closed with %d, want 1008", code)
	}
	_ = held[0].Conn.WriteClose(1000, nil)
	held[0].Closed()
	dial(envs[1], "system")
}
