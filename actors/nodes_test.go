package actors

import (
	"testing"
	"time"

	"github.com/pandachat/pandachat/cluster"
	"github.com/pandachat/pandachat/internal/faultstore"
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
	if err := nc.Publish(subjectStart, mustJSON(t, nodeStarted{Node: "other", Epoch: 1})); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return systemNum(t, hub, "r") == 1 })
}

// A write that fails (a timeout, say) while another node stores the same ids:
// the room reads back what the store holds under them and delivers only its
// own messages; the other writer's message is delivered as it is, and the
// sender of the lost one is told to send it again.
func TestFailedWriteUnderAnotherWriter(t *testing.T) {
	node, err := cluster.Start(cluster.Options{Name: "solo", Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	mem := badger(t)
	fs := faultstore.New(mem)
	hub := NewHub(Options{Store: fs, Rate: Rate{Off: true}, Nodes: node})
	defer hub.Shutdown(5 * time.Second)
	sink := &captureSink{}
	c := connect(t, hub, ConnSpec{UID: "me", NickName: "me", Room: "r", Sink: sink})
	frames := func() []map[string]any {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		return append([]map[string]any(nil), sink.frames...)
	}
	waitFor(t, func() bool { return len(frames()) == 1 }) // the system frame

	// Another node stores id 1 behind this room's back; this room's own write fails.
	other := []byte(`{"id":1,"number":1,"time":1,"uid":"other","nickName":"o","avatarUrl":"","text":true,"content":"theirs"}`)
	if err := mem.AppendMessages("r", []persistence.Message{{ID: 1, Data: other}}); err != nil {
		t.Fatal(err)
	}
	fs.FailWrites(1)
	c.Receive([]byte(`{"text":true,"content":"mine","cid":"a"}`), false)
	waitFor(t, func() bool { return len(frames()) == 2 })
	if f := frames()[1]; f["type"] != "error" || f["error"] != "ERR_UNAVAILABLE" || f["cid"] != "a" {
		t.Fatalf("after the failed write: %v, want ERR_UNAVAILABLE for cid a (its id 1 is another's)", f)
	}
	// Sent again, it is stored after the other writer's message, which comes first.
	time.Sleep(250 * time.Millisecond) // past the broken room's retry delay
	c.Receive([]byte(`{"text":true,"content":"mine","cid":"a"}`), false)
	waitFor(t, func() bool { return len(frames()) == 4 })
	got := frames()
	if got[2]["id"] != float64(1) || got[2]["content"] != "theirs" || got[3]["id"] != float64(2) || got[3]["content"] != "mine" || got[3]["cid"] != "a" {
		t.Errorf("then: %v and %v, want the other's id 1, then mine as id 2 with its cid", got[2], got[3])
	}
}
