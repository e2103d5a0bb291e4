package actors

import (
	"testing"
	"time"

	"github.com/pandachat/pandachat/internal/faultstore"
)

// A recall stored by a batch whose write "failed" and whose store could not
// then be read is delivered once the store answers again; from then on the
// room's tail holds the recalled message as its stub, so a replay never shows
// what it said.
func TestRecallReadBackRecallsTheTail(t *testing.T) {
	fs := faultstore.New(badger(t))
	hub := NewHub(Options{Store: fs, Rate: Rate{Off: true}})
	defer hub.Shutdown(5 * time.Second)
	a := &captureSink{}
	ca := connectJoined(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: a, V2: true})
	ca.Receive(text("secret"), false)
	frames(t, a, 2)
	fs.FailAfterCommit(1) // the recall is stored, the room is told it failed
	fs.FailReads(1)       // and cannot ask the store what it holds
	ca.Receive([]byte(`{"recall":1}`), false)
	frames(t, a, 3) // the refusal
	time.Sleep(retryBroken + 50*time.Millisecond)
	ca.Receive(text("after"), false)
	waitFor(t, func() bool {
		return len(ofType(a.all(), "type", "recall")) == 1 && len(ofType(a.all(), "content", "after")) == 1
	})
	b := &captureSink{}
	connect(t, hub, ConnSpec{UID: "ub", Room: "r", Sink: b, V2: true, HasSince: true})
	f := frames(t, b, 4) // system, 1 (recalled), the recall, 3
	if f[1]["id"] != float64(1) || f[1]["recalled"] != true || f[1]["content"] != nil {
		t.Errorf("replay of the recalled message: %v", f[1])
	}
}

// After a restart the room knows the cids of the last cidWindow from its
// store, up to the window's last instant: a re-send then is not stored again.
func TestCIDsReloadedToTheWindowsEnd(t *testing.T) {
	st := badger(t)
	t0 := time.UnixMilli(1700000000000)
	clock := &fakeClock{t: t0}
	hub := NewHub(Options{Store: st, Rate: Rate{Off: true}, Now: clock.now})
	a := &captureSink{}
	connect(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: a}).Receive(textCID("k"), false)
	frames(t, a, 2)
	hub.Shutdown(5 * time.Second)

	clock.set(t0.Add(cidWindow))
	hub = NewHub(Options{Store: st, Rate: Rate{Off: true}, Now: clock.now})
	defer hub.Shutdown(5 * time.Second)
	b := &captureSink{}
	connect(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: b}).Receive(textCID("k"), false)
	if f := frames(t, b, 2)[1]; f["id"] != float64(1) || f["cid"] != "k" {
		t.Errorf("re-send at the window's end after a restart: %v; want the echo of id 1", f)
	}
	if last, _ := st.LastID("r"); last != 1 {
		t.Errorf("last id %d: the re-send was stored again", last)
	}
}
