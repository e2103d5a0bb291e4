package actors

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/pandachat/pandachat/internal/faultstore"
	"github.com/pandachat/pandachat/persistence"
	"github.com/pandachat/pandachat/protocol"
)

// An operator reads one error per outage of the store, however many posts
// it refuses, and one per batch that is refused (none for a batch that is
// stored after all).
func TestStoreOutageLogs(t *testing.T) {
	fs := faultstore.New(persistence.NewMemory())
	logs := &syncBuffer{}
	hub := NewHub(Options{Store: fs, Rate: Rate{Off: true}, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	defer hub.Shutdown(5 * time.Second)
	a := &captureSink{}
	ca := connect(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: a})
	exactly(t, a, 1)
	count := func(msg string) int { return strings.Count(logs.String(), `msg="`+msg) }
	const outage, refused = "room cannot tell what the store holds", "storing messages failed"

	fs.FailAfterCommit(1) // stored after all
	ca.Receive(text("one"), false)
	checkIDs(t, "stored after all", exactly(t, a, 2)[1:], "user:1:one")
	if n := count(refused); n != 0 {
		t.Errorf("%d refusals logged for a batch that was stored", n)
	}

	fs.FailWrites(1)
	fs.FailReads(faultstore.Always)
	ca.Receive(text("two"), false)
	exactly(t, a, 3)
	if n, m := count(outage), count(refused); n != 1 || m != 1 {
		t.Errorf("after the first failure: %d outages and %d refusals logged, want 1 and 1", n, m)
	}
	for i := range 2 {
		time.Sleep(retryBroken + 20*time.Millisecond) // the room asks the store again
		ca.Receive(text("three"), false)
		if got := exactly(t, a, 4+i)[3+i]; got["error"] != protocol.ErrUnavailable {
			t.Fatalf("while the store fails: %v", got)
		}
	}
	if n := count(outage); n != 1 {
		t.Errorf("%d outages logged for one, want 1:\n%s", n, logs)
	}
	fs.Clear()
	time.Sleep(retryBroken + 20*time.Millisecond)
	ca.Receive(text("four"), false)
	checkIDs(t, "after the outage", exactly(t, a, 6)[5:], "user:2:four")
}

// trimStore fails or panics in TrimMessages when told to.
type trimStore struct {
	persistence.Store
	fail, panics bool
}

func (s *trimStore) TrimMessages(room string, keepFrom uint64) (int, error) {
	switch {
	case s.panics:
		panic("trim")
	case s.fail:
		return 0, errors.New("trim refused")
	}
	return s.Store.TrimMessages(room, keepFrom)
}

// A trim that fails or panics is logged (the room goes on); one that works is not.
func TestTrimFailuresLogged(t *testing.T) {
	for _, tc := range []struct {
		name         string
		fail, panics bool
		want         string
	}{
		{"works", false, false, ""},
		{"fails", true, false, `level=WARN msg="history trim failed" room=r err="trim refused"`},
		{"panics", false, true, `level=ERROR msg="history trim failed" room=r panic=trim`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := &syncBuffer{}
			st := &trimStore{Store: persistence.NewMemory(), fail: tc.fail, panics: tc.panics}
			hub := NewHub(Options{Store: st, Rate: Rate{Off: true}, Retention: 1, Logger: slog.New(slog.NewTextHandler(logs, nil))})
			stopped := false
			defer func() {
				if !stopped {
					hub.Shutdown(5 * time.Second)
				}
			}()
			a := &captureSink{}
			ca := connect(t, hub, ConnSpec{UID: "ua", Room: "r", Sink: a})
			exactly(t, a, 1)
			ca.Receive(text("one"), false)
			exactly(t, a, 2)
			ca.Receive(text("two"), false) // trims id 1 (in the background)
			exactly(t, a, 3)
			if tc.want == "" {
				waitFor(t, func() bool { m, _ := st.MessagesAfter("r", 0, 1); return len(m) == 1 && m[0].ID == 2 })
			} else {
				waitFor(t, func() bool { return strings.Contains(logs.String(), "history trim failed") })
			}
			ca.Receive(text("three"), false) // the room goes on
			exactly(t, a, 4)
			hub.Shutdown(5 * time.Second)
			stopped = true
			if tc.want == "" && strings.Contains(logs.String(), "history trim failed") || !strings.Contains(logs.String(), tc.want) {
				t.Errorf("logs:\n%s\nwant %q", logs, tc.want)
			}
		})
	}
}
