package actors

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pandachat/pandachat/internal/faultstore"
	"github.com/pandachat/pandachat/persistence"
	"github.com/pandachat/pandachat/protocol"
)

// fakeClock is the hub's Now, moved by the test.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// frames waits until s holds n frames and returns them.
// connectJoined connects spec, whose Sink is a *captureSink, and waits for its first
// frame (the system frame): the member is then in the room.
func connectJoined(t *testing.T, h *Hub, spec ConnSpec) *Conn {
	t.Helper()
	c := connect(t, h, spec)
	frames(t, spec.Sink.(*captureSink), 1)
	return c
}

func frames(t *testing.T, s *captureSink, n int) []map[string]any {
	t.Helper()
	waitFor(t, func() bool { return len(s.all()) >= n })
	return s.all()
}

// Refusals one floodPause apart are separate bursts, never a flood; refusals
// that keep coming for exactly floodAfter are one.
func TestFloodEdges(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	clock := &fakeClock{t: t0}
	hub := NewHub(Options{Store: persistence.NewMemory(), Rate: Rate{Messages: 1, Per: 1000 * time.Hour}, Now: clock.now})
	defer hub.Shutdown(5 * time.Second)
	a := &captureSink{}
	ca := connectJoined(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: a})
	ca.Receive(text("allowed"), false)
	frames(t, a, 2) // its echo
	n := 2
	refuse := func(at time.Time) map[string]any {
		t.Helper()
		clock.set(at)
		ca.Receive(text("refused"), false)
		n++
		return frames(t, a, n)[n-1]
	}
	for i := range 7 { // 6 s of refusals, each a floodPause after the last
		if f := refuse(t0.Add(time.Duration(i) * floodPause)); f["error"] != protocol.ErrRateLimited {
			t.Fatalf("refusal %d, %s after the last: %v; want ERR_RATE_LIMITED", i, floodPause, f)
		}
	}
	t1 := t0.Add(7 * floodPause)
	for i := range 50 { // 4.9 s
		if f := refuse(t1.Add(time.Duration(i) * 100 * time.Millisecond)); f["error"] != protocol.ErrRateLimited {
			t.Fatalf("refusal %d after %s: %v; want ERR_RATE_LIMITED", i, time.Duration(i)*100*time.Millisecond, f)
		}
	}
	if f := refuse(t1.Add(floodAfter)); f["close"] != float64(protocol.ClosePolicy) {
		t.Fatalf("a refusal %s into the run: %v; want the close", floodAfter, f)
	}
}

// Recall is allowed up to the last instant of the window; typing notices go
// out at most once per typingEvery, and again at exactly typingEvery.
func TestRecallAndTypingEdges(t *testing.T) {
	t0 := time.UnixMilli(1700000000000)
	clock := &fakeClock{t: t0}
	st := persistence.NewMemory()
	hub := NewHub(Options{Store: st, Rate: Rate{Off: true}, Now: clock.now})
	defer hub.Shutdown(5 * time.Second)
	a, b := &captureSink{}, &captureSink{}
	ca := connectJoined(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: a, V2: true})
	connect(t, hub, ConnSpec{UID: "ub", Room: "r", Sink: b, V2: true})
	frames(t, b, 1)
	waitJoined(t, st, "ub", "r")

	ca.Receive(text("one"), false) // id 1 at t0
	ca.Receive(text("two"), false) // id 2 at t0
	frames(t, b, 3)
	clock.set(t0.Add(DefaultRecallWindow))
	ca.Receive([]byte(`{"recall":1}`), false)
	if f := frames(t, b, 4)[3]; f["type"] != "recall" || f["target"] != float64(1) {
		t.Fatalf("recall at the window's end: %v", f)
	}
	clock.set(t0.Add(DefaultRecallWindow + time.Millisecond))
	ca.Receive([]byte(`{"recall":2,"cid":"late"}`), false)
	if f := frames(t, a, 5)[4]; f["error"] != protocol.ErrNotAllowed || f["cid"] != "late" {
		t.Fatalf("recall after the window: %v", f)
	}

	typing := func(at time.Time, marker string) int {
		t.Helper()
		clock.set(at)
		ca.Receive([]byte(`{"typing":true}`), false)
		ca.Receive(text(marker), false) // handled after the notice: b has it once the marker is there
		waitFor(t, func() bool { f := b.all(); return f[len(f)-1]["content"] == marker })
		return len(ofType(b.all(), "type", "typing"))
	}
	t1 := t0.Add(time.Hour)
	if n := typing(t1, "m1"); n != 1 {
		t.Fatalf("%d typing notices after the first, want 1", n)
	}
	if n := typing(t1.Add(typingEvery-time.Millisecond), "m2"); n != 1 {
		t.Fatalf("%d typing notices after one too soon, want 1", n)
	}
	if n := typing(t1.Add(typingEvery), "m3"); n != 2 {
		t.Fatalf("%d typing notices after one %s later, want 2", n, typingEvery)
	}
}

// Events may target the room's last message and the oldest it keeps, not
// beyond either; one without a cid is echoed; a cid re-sent is answered with
// its event, not toggled again; a target the store cannot read is a refusal
// to try again (ERR_UNAVAILABLE), not ERR_NOT_ALLOWED.
func TestEventTargets(t *testing.T) {
	fs := faultstore.New(badger(t))
	hub := NewHub(Options{Store: fs, Rate: Rate{Off: true}, Retention: 5, TailSize: 1})
	defer hub.Shutdown(5 * time.Second)
	a := &captureSink{}
	ca := connectJoined(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: a, V2: true})
	for range 10 {
		ca.Receive(text("m"), false)
	}
	frames(t, a, 11)
	waitFor(t, func() bool { return oldest(t, fs, "r") == 6 })
	n := 11
	send := func(frame string) map[string]any {
		t.Helper()
		ca.Receive([]byte(frame), false)
		n++
		return frames(t, a, n)[n-1]
	}
	reacted := func(f map[string]any, target float64) bool { return f["type"] == "reaction" && f["target"] == target }
	// Each event is an id of its own: retention then keeps the ids from one higher.
	if f := send(`{"react":10,"emoji":"👍"}`); !reacted(f, 10) { // the last id, no cid
		t.Errorf("reaction to the last message: %v", f)
	}
	waitFor(t, func() bool { return oldest(t, fs, "r") == 7 })
	if f := send(`{"react":7,"emoji":"👍"}`); !reacted(f, 7) { // the oldest kept
		t.Errorf("reaction to the oldest message kept: %v", f)
	}
	waitFor(t, func() bool { return oldest(t, fs, "r") == 8 })
	for _, target := range []string{"13", "7"} { // past the last id; trimmed
		if f := send(`{"react":` + target + `,"emoji":"👍","cid":"c` + target + `"}`); f["error"] != protocol.ErrNotAllowed || f["cid"] != "c"+target {
			t.Errorf("reaction to %s: %v; want ERR_NOT_ALLOWED", target, f)
		}
	}
	first := send(`{"react":10,"emoji":"❤️","cid":"k"}`)
	again := send(`{"react":10,"emoji":"❤️","cid":"k"}`)
	if !reacted(first, 10) || first["on"] != true || again["id"] != first["id"] || again["on"] != true || again["cid"] != "k" {
		t.Errorf("a re-sent cid: %v then %v; want the same event twice", first, again)
	}
	fs.FailReads(1) // 10 is not in the tail of 1: it must be read
	if f := send(`{"react":10,"emoji":"😀","cid":"u"}`); f["error"] != protocol.ErrUnavailable || f["cid"] != "u" {
		t.Errorf("reaction to a message the store cannot read: %v; want ERR_UNAVAILABLE", f)
	}
}

// markReadStore fails MarkRead when told to.
type markReadStore struct {
	persistence.Store
	fail atomic.Bool
}

func (s *markReadStore) MarkRead(m []persistence.ReadMark) error {
	if s.fail.Load() {
		return errors.New("disk on fire")
	}
	return s.Store.MarkRead(m)
}

// A message takes at most maxEmojiPerMsg different reactions; once every one
// is taken back, the store holds no reaction state for it at all. A read
// position that cannot be written is logged; one that is written is not.
func TestReactionLimitAndEmptyState(t *testing.T) {
	st := &markReadStore{Store: badger(t)}
	logs := &syncBuffer{}
	hub := NewHub(Options{Store: st, Rate: Rate{Off: true}, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	stopped := false
	defer func() {
		if !stopped {
			hub.Shutdown(5 * time.Second)
		}
	}()
	a := &captureSink{}
	ca := connectJoined(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: a, V2: true})
	waitJoined(t, st, "ua", "r")
	ca.Receive(text("m"), false)
	n := 2
	frames(t, a, n)
	send := func(frame string) map[string]any {
		t.Helper()
		ca.Receive([]byte(frame), false)
		n++
		return frames(t, a, n)[n-1]
	}
	emoji := []string{"😀", "😁", "😂", "🤣", "😃", "😄", "😅", "😆", "😉", "😊", "😋", "😎", "😍", "😘", "🥰", "😗", "😙", "😚", "🙂", "🤗", "🤩"}
	for _, e := range emoji[:maxEmojiPerMsg] {
		if f := send(`{"react":1,"emoji":"` + e + `"}`); f["type"] != "reaction" || f["on"] != true {
			t.Fatalf("reaction %s: %v", e, f)
		}
	}
	if f := send(`{"react":1,"emoji":"` + emoji[maxEmojiPerMsg] + `"}`); f["error"] != protocol.ErrNotAllowed {
		t.Fatalf("reaction %d: %v; want ERR_NOT_ALLOWED", maxEmojiPerMsg+1, f)
	}
	for _, e := range emoji[:maxEmojiPerMsg] {
		if f := send(`{"react":1,"emoji":"` + e + `"}`); f["type"] != "reaction" || f["on"] != false {
			t.Fatalf("taking %s back: %v", e, f)
		}
	}
	page, err := st.History("r", 100, 10, persistence.HistoryQuery{UID: "ua", Reactions: true})
	if err != nil || len(page.Items) != 1 {
		t.Fatalf("history: %v %v", page, err)
	}
	if it := page.Items[0]; it.Counts != nil || it.Mine != nil {
		t.Errorf("no reactions left, yet counts %q and mine %q", it.Counts, it.Mine)
	}
	if counts, mine, err := st.Reactions("r", 1, "ua"); err != nil || counts != nil || mine != nil {
		t.Errorf("no reactions left, yet the store holds counts %q and mine %q (%v)", counts, mine, err)
	}
	stopped = true
	hub.Shutdown(5 * time.Second) // writes the read positions
	if strings.Contains(logs.String(), "read positions not stored") {
		t.Errorf("a read position written is logged as not stored:\n%s", logs)
	}

	st.fail.Store(true)
	hub2 := NewHub(Options{Store: st, Rate: Rate{Off: true}, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	defer hub2.Shutdown(5 * time.Second)
	b := &captureSink{}
	connect(t, hub2, ConnSpec{UID: "ub", Room: "r", Sink: b})
	frames(t, b, 1)
	waitFor(t, func() bool { return strings.Contains(logs.String(), "read positions not stored") })
}

// syncBuffer is a log destination safe for the actors' goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// A socket whose session ends before its room has answered the join (the
// room's start is stuck on the store) gets the session error, then the close.
func TestSessionEndsBeforeTheJoin(t *testing.T) {
	fs := faultstore.New(persistence.NewMemory())
	fs.StallReads() // the room's start reads its last id
	hub := NewHub(Options{Store: fs})
	defer hub.Shutdown(5 * time.Second)
	defer fs.Release()
	hub.EndSession("gone")
	a := &captureSink{}
	connect(t, hub, ConnSpec{UID: "ua", SessionID: "gone", Room: "r", Sink: a})
	f := frames(t, a, 2)
	if f[0]["error"] != protocol.ErrInvalidSession || f[1]["close"] != float64(protocol.ClosePolicy) {
		t.Errorf("frames %v; want the session error, then close %d", f, protocol.ClosePolicy)
	}
}

// A connection closed before it learnt its room still leaves it: the leave
// goes through the registry, behind the join. The other member sees one
// online, at once or after the leave.
func TestLeaveBeforeAssigned(t *testing.T) {
	hub := NewHub(Options{Store: persistence.NewMemory()})
	defer hub.Shutdown(5 * time.Second)
	for i := range 10 {
		room := fmt.Sprint("r", i)
		connect(t, hub, ConnSpec{UID: "ua", Room: room, Sink: &captureSink{}}).Closed()
		b := &captureSink{}
		connect(t, hub, ConnSpec{UID: "ub", Room: room, Sink: b, Presence: true})
		waitFor(t, func() bool { f := b.all(); return len(f) > 0 && f[len(f)-1]["num"] == float64(1) })
	}
}

// The protoactor log is kept at WARN and above.
func TestLibraryLogLevel(t *testing.T) {
	h := minLevel{slog.NewTextHandler(&syncBuffer{}, &slog.HandlerOptions{Level: slog.LevelDebug}), slog.LevelWarn}
	for l, want := range map[slog.Level]bool{slog.LevelDebug: false, slog.LevelInfo: false, slog.LevelWarn - 1: false, slog.LevelWarn: true, slog.LevelError: true} {
		if got := h.Enabled(context.Background(), l); got != want {
			t.Errorf("Enabled(%v) = %v, want %v", l, got, want)
		}
	}
	quiet := minLevel{slog.NewTextHandler(&syncBuffer{}, &slog.HandlerOptions{Level: slog.LevelError}), slog.LevelWarn}
	if quiet.Enabled(context.Background(), slog.LevelWarn) {
		t.Error("a record the handler itself drops is enabled")
	}
}
