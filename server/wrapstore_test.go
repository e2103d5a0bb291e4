package server_test

import (
	"testing"

	"github.com/pandachat/pandachat/internal/chattest"
	"github.com/pandachat/pandachat/internal/faultstore"
	"github.com/pandachat/pandachat/persistence"
	"github.com/pandachat/pandachat/server"
)

// startFaulty runs the real server over a real Badger wrapped in a faultstore.
func startFaulty(t *testing.T, cfg func(*server.Config)) (*chattest.Env, *faultstore.Store) {
	t.Helper()
	c := noLimit()
	if cfg != nil {
		cfg(&c)
	}
	var fs *faultstore.Store
	c.WrapStore = func(s persistence.Store) persistence.Store {
		fs = faultstore.New(s)
		return fs
	}
	env := chattest.Start(t, c)
	t.Cleanup(fs.Clear) // runs before the server's shutdown: nothing stays stalled
	return env, fs
}

// The server runs over the wrapped store: a write it refuses reaches the sender
// as ERR_UNAVAILABLE with its cid, and the next one is stored.
func TestWrapStore(t *testing.T) {
	env, fs := startFaulty(t, nil)
	a := env.DevLogin("a")
	c := env.Dial(a, "room=wrap")
	c.NextOfType("system")
	fs.FailWrites(1)
	c.Send(map[string]any{"text": true, "content": "lost", "cid": "c1"})
	if m := c.NextChat(); m.Error != "ERR_UNAVAILABLE" || m.CID != "c1" {
		t.Fatalf("refused write: got %+v, want ERR_UNAVAILABLE for c1", m)
	}
	c.Send(map[string]any{"text": true, "content": "kept", "cid": "c2"})
	if m := c.NextChat(); m.Type != "user" || m.ID != 1 || m.CID != "c2" {
		t.Fatalf("next write: got %+v, want the echo of id 1", m)
	}
	var all []chattest.Chat
	env.Do(a, "GET", "/history?room=wrap", nil, &all)
	if len(all) != 1 || all[0].Content != "kept" {
		t.Fatalf("history %v", all)
	}
	if fs.Calls(faultstore.AppendMessages) != 2 || fs.Injected() != 1 {
		t.Errorf("store saw %d writes, %d faults; want 2 and 1", fs.Calls(faultstore.AppendMessages), fs.Injected())
	}
}
