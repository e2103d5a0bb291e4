package actors

import (
	"testing"
	"time"

	"github.com/pandachat/pandachat/cluster"
	"github.com/pandachat/pandachat/persistence"
)

// systemNum joins room with a fresh connection and returns the num of its
// system frame: the room's members over every node, itself included.
func systemNum(t *testing.T, hub *Hub, room string) float64 {
	t.Helper()
	sink := &captureSink{}
	c := connect(t, hub, ConnSpec{UID: "probe", NickName: "p", Room: room, Sink: sink})
	defer c.Closed()
	var num float64
	waitFor(t, func() bool {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		if len(sink.frames) == 0 {
			return false
		}
		num, _ = sink.frames[0]["num"].(float64)
		return true
	})
	return num
}

// Counts from other nodes are part of a room's online count; a node that says
// it (re)started has no members any more, even if it never left the live set
// (killed and back within the time that counts a node down).
func TestCountsOfARestartedNode(t *testing.T) {
	node, err := cluster.Start(cluster.Options{Name: "solo", Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	hub := NewHub(Options{Store: persistence.NewMemory(), Rate: Rate{Off: true}, IdleRoom: 10 * time.Millisecond, Nodes: node})
	defer hub.Shutdown(5 * time.Second)

	nc := node.Conn()
	if err := nc.Publish(subjectCount+"r", []byte(`{"t":"c","o":"other","n":2}`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return systemNum(t, hub, "r") == 3 }) // two elsewhere and the probe
	if err := nc.Publish(subjectStart, []byte("other")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return systemNum(t, hub, "r") == 1 })
}
