package actors

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pandachat/pandachat/persistence"
)

// countSink counts the frames it is given, as a socket that is always ready.
type countSink struct {
	frames atomic.Int64
	closed atomic.Bool
}

func (s *countSink) Send(frames ...[]byte) bool {
	n := int64(0)
	for _, b := range frames {
		n += countFrames(b)
	}
	s.frames.Add(n)
	return true
}

func countFrames(b []byte) int64 {
	n := int64(0)
	for len(b) >= 2 { // walk the frame headers: a batch may hold many frames
		l, h := int(b[1]&0x7f), 2
		switch l {
		case 126:
			l, h = int(b[2])<<8|int(b[3]), 4
		case 127:
			l, h = int(b[6])<<24|int(b[7])<<16|int(b[8])<<8|int(b[9]), 10
		}
		b = b[h+l:]
		n++
	}
	return n
}

func (s *countSink) Close(int, string, ...[]byte) { s.closed.Store(true) }

func waitFrames(b *testing.B, s *countSink, n int64) {
	deadline := time.Now().Add(30 * time.Second)
	for s.frames.Load() < n {
		if time.Now().After(deadline) {
			b.Fatalf("sink saw %d frames, want %d", s.frames.Load(), n)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// Protocol versions the benchmarks run with: v=1 is the original client (the
// names without a version), v=2 members that opted into events, v=2mix the same
// with one message in 16 mentioning someone, so that batches have a version 1
// and a version 2 form (all members are of version 2: only the latter is made).
var benchVersions = []struct {
	suffix string
	v2     bool
	mix    bool
}{{"", false, false}, {"/v=2", true, false}, {"/v=2mix", true, true}}

// BenchmarkRoom_Broadcast measures one message through conn actor → room actor →
// store → fan-out into every member's sink. ns/op is per message.
func BenchmarkRoom_Broadcast(b *testing.B) {
	for _, members := range []int{1, 100, 1000} {
		for _, store := range []string{"memory", "badger"} {
			for _, v := range benchVersions {
				if v.v2 && members == 1 {
					continue
				}
				b.Run(fmt.Sprintf("%dconns/store=%s%s", members, store, v.suffix), func(b *testing.B) {
					benchBroadcast(b, members, store, v.v2, v.mix)
				})
			}
		}
	}
}

func benchBroadcast(b *testing.B, members int, store string, v2, mix bool) {
	var st persistence.Store = persistence.NewMemory()
	if store == "badger" {
		bs, err := persistence.OpenBadger(b.TempDir(), persistence.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer bs.Close()
		st = bs
	}
	hub := NewHub(Options{Store: st, Rate: Rate{Off: true}, Retention: -1})
	defer hub.Shutdown(5 * time.Second)
	sinks := make([]*countSink, members)
	var sender *Conn
	for i := range sinks {
		sinks[i] = &countSink{}
		c := connect(b, hub, ConnSpec{UID: fmt.Sprintf("u%d", i), NickName: "n", Room: "bench", Sink: sinks[i], V2: v2})
		if i == 0 {
			sender = c
		}
		waitFrames(b, sinks[i], 1) // joined: system frame
	}
	last := sinks[members-1]
	msg := []byte(`{"text":true,"content":"` + string(make([]byte, 0)) + `hello, this is a chat message of about one hundred bytes in total length!"}`)
	mention := []byte(`{"text":true,"content":"@u1 hello, this is a chat message of about one hundred bytes in total!","mentions":["u1"]}`)
	if mix {
		waitMember(b, st, "u1", "bench")
	}
	b.ReportAllocs()
	b.ResetTimer()
	const depth = 128 // below the in-flight bound of a connection
	for i := 0; i < b.N; i++ {
		if mix && i%16 == 15 {
			sender.Receive(mention, false)
		} else {
			sender.Receive(msg, false)
		}
		if i%depth == depth-1 {
			waitFrames(b, sinks[0], int64(i+1-depth/2)+1)
		}
	}
	waitFrames(b, last, int64(b.N)+1)
	b.StopTimer()
	b.ReportMetric(float64(b.N*members)/b.Elapsed().Seconds(), "deliveries/s")
}

// waitMember waits until uid's join of room is stored (mentions name members).
func waitMember(b *testing.B, st persistence.Store, uid, room string) {
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
		if _, err := st.ReadPosition(uid, room); err == nil {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s never joined %s", uid, room)
		}
	}
}

// tallySink counts frames into a counter shared by many sinks.
type tallySink struct{ n *atomic.Int64 }

func (s tallySink) Send(frames ...[]byte) bool {
	for _, b := range frames {
		s.n.Add(countFrames(b))
	}
	return true
}

func (tallySink) Close(int, string, ...[]byte) {}

// BenchmarkRooms_Small measures one message in many small rooms: one sender
// per room, messages spread round-robin over the rooms. ns/op and allocs/op
// are per message (fan-out to the room's members included).
func BenchmarkRooms_Small(b *testing.B) {
	for _, shape := range []struct{ rooms, members int }{{1000, 10}, {100, 100}} {
		for _, store := range []string{"memory", "badger"} {
			for _, v := range benchVersions[:2] {
				b.Run(fmt.Sprintf("%dx%d/store=%s%s", shape.rooms, shape.members, store, v.suffix), func(b *testing.B) {
					benchSmall(b, shape.rooms, shape.members, store, v.v2)
				})
			}
		}
	}
}

func benchSmall(b *testing.B, rooms, members int, store string, v2 bool) {
	shape := struct{ rooms, members int }{rooms, members}
	var st persistence.Store = persistence.NewMemory()
	if store == "badger" {
		bs, err := persistence.OpenBadger(b.TempDir(), persistence.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer bs.Close()
		st = bs
	}
	hub := NewHub(Options{Store: st, Rate: Rate{Off: true}, Retention: -1, MaxConnsPerUser: -1})
	defer hub.Shutdown(10 * time.Second)
	var frames atomic.Int64
	senders := make([]*Conn, shape.rooms)
	for r := 0; r < shape.rooms; r++ {
		for m := 0; m < shape.members; m++ {
			c := connect(b, hub, ConnSpec{UID: fmt.Sprintf("u%d-%d", r, m), NickName: "n", Room: fmt.Sprint("room", r), Sink: tallySink{&frames}, V2: v2})
			if m == 0 {
				senders[r] = c
			}
		}
	}
	joined := int64(shape.rooms * shape.members)
	for deadline := time.Now().Add(60 * time.Second); frames.Load() < joined; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d joined", frames.Load(), joined)
		}
	}
	msg := []byte(`{"text":true,"content":"hello, this is a chat message of about one hundred bytes in total length!"}`)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		senders[i%shape.rooms].Receive(msg, false) // waits at the in-flight bound
	}
	want := joined + int64(b.N*shape.members)
	for deadline := time.Now().Add(60 * time.Second); frames.Load() < want; time.Sleep(50 * time.Microsecond) {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d frames delivered", frames.Load(), want)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
