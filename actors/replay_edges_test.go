package actors

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pandachat/pandachat/internal/faultstore"
	"github.com/pandachat/pandachat/persistence"
	"github.com/pandachat/pandachat/protocol"
)

// A reconnect with since gets the messages after it, at most ReplayLimit of
// them (the newest), from the tail when it reaches back far enough and from
// the store when not; the member's own messages as "user", others' as
// "remote".
func TestReplayRanges(t *testing.T) {
	st := badger(t)
	hub := NewHub(Options{Store: st, Rate: Rate{Off: true}, TailSize: 4, ReplayLimit: 5})
	defer hub.Shutdown(5 * time.Second)
	a, b := &captureSink{}, &captureSink{}
	ca := connectJoined(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: a})
	cb := connectJoined(t, hub, ConnSpec{UID: "ub", Room: "r", Sink: b})
	for range 9 {
		ca.Receive(text("a"), false)
	}
	frames(t, a, 10)
	cb.Receive(text("b"), false)
	frames(t, a, 11)
	for since, want := range map[uint64]string{
		10: "", 9: "10", 8: "9 10", // from the tail (7..10)
		6: "7 8 9 10", 5: "6 7 8 9 10", 4: "6 7 8 9 10", 0: "6 7 8 9 10", // the limit of 5, from the store
	} {
		s := &captureSink{}
		c := connect(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: s, HasSince: true, Since: since})
		f := frames(t, s, 1) // the replay comes in the same write as the system frame
		var got []string
		for _, m := range f[1:] {
			typ := "user"
			if m["id"] == float64(10) {
				typ = "remote"
			}
			if m["type"] != typ {
				t.Errorf("since %d: %v, want type %s", since, m, typ)
			}
			got = append(got, fmt.Sprint(m["id"]))
		}
		if g := strings.Join(got, " "); g != want {
			t.Errorf("since %d: replayed %q, want %q", since, g, want)
		}
		c.Closed()
	}
}

// A replay holds the newest messages whose stored bytes, each counted with 32
// more for its frame, fit in maxReplayBytes: exactly, when they fill it to the
// byte, and not one more when the next would overshoot by less than 64.
func TestReplayByteCapIsExact(t *testing.T) {
	// The stored size of a message of ua with a three-digit id and n bytes of content.
	stored := func(n int) int {
		rec := protocol.Record{ID: 123, Number: 1, Time: time.Now().UnixMilli(), UID: "ua", Kind: protocol.KindText, Content: strings.Repeat("z", n)}
		return len(protocol.AppendRecord(nil, &rec))
	}
	overhead := stored(0)
	near := 0 // a per-message size that leaves 1..63 bytes short of the next message
	for size := 9000; near == 0; size++ {
		if r := maxReplayBytes % size; r > 0 && r >= size-64 {
			near = size
		}
	}
	for _, size := range []int{8192, near} { // 8192 divides maxReplayBytes
		fit := maxReplayBytes / size
		n := fit + 110 // the replayed ones all have three-digit ids
		st := persistence.NewMemory()
		hub := NewHub(Options{Store: st, Rate: Rate{Off: true}, MaxContent: 20000})
		a := &countSink{}
		ca := connect(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: a})
		waitFor(t, func() bool { return a.frames.Load() == 1 })
		body := text(strings.Repeat("z", size-32-overhead))
		for range n {
			ca.Receive(body, false)
		}
		waitFor(t, func() bool { return a.frames.Load() == int64(n)+1 })
		j := &captureSink{}
		connect(t, hub, ConnSpec{UID: "uj", Room: "r", Sink: j, HasSince: true})
		waitFor(t, func() bool { return len(j.all()) > 1 })
		if got := ids(j.all()); !sameIDs(got, seq(uint64(n-fit+1), uint64(n))) {
			t.Errorf("messages of %d bytes with the frame: replayed %d from id %v, want the newest %d", size, len(got), got[0], fit)
		}
		hub.Shutdown(5 * time.Second)
	}
}

// An image message goes through the room like a text one.
func TestGalleryMessage(t *testing.T) {
	hub := NewHub(Options{Store: persistence.NewMemory(), Rate: Rate{Off: true}})
	defer hub.Shutdown(5 * time.Second)
	a := &captureSink{}
	ca := connect(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: a, Base: "http://h",
		Resolve: func(raw string) (string, error) { return raw, nil }})
	frames(t, a, 1)
	ca.Receive([]byte(`{"gallery":true,"url":"/media/x","cid":"g"}`), false)
	if f := frames(t, a, 2)[1]; f["type"] != "user" || f["gallery"] != true || f["url"] != "http://h/media/x" || f["cid"] != "g" {
		t.Errorf("image echo: %v", f)
	}
}

// A cid re-sent after its message left the tail is answered with the echo
// read from the store; when the store cannot read it, the sender is told.
func TestResentCIDOutsideTheTail(t *testing.T) {
	fs := faultstore.New(badger(t))
	hub := NewHub(Options{Store: fs, Rate: Rate{Off: true}, TailSize: 1})
	defer hub.Shutdown(5 * time.Second)
	a := &captureSink{}
	ca := connectJoined(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: a})
	ca.Receive(textCID("k"), false)
	ca.Receive(textCID("l"), false)
	ca.Receive(textCID("m"), false)
	frames(t, a, 4)
	ca.Receive(textCID("l"), false)
	if f := frames(t, a, 5)[4]; f["id"] != float64(2) || f["cid"] != "l" || f["content"] != "l" {
		t.Errorf("re-sent cid of message 2: %v; want its echo", f)
	}
	fs.FailReads(1)
	ca.Receive(textCID("k"), false)
	if f := frames(t, a, 6)[5]; f["error"] != protocol.ErrUnavailable || f["cid"] != "k" {
		t.Errorf("re-sent cid whose message cannot be read: %v", f)
	}
	if last, _ := fs.LastID("r"); last != 3 {
		t.Errorf("last id %d: a re-send was stored again", last)
	}
}
