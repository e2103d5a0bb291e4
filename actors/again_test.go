package actors

import (
	"encoding/json"
	"testing"

	"github.com/pandachat/pandachat/persistence"
)

// A re-sent cid whose original the owner stored in a batch this node never
// heard (the owner was paused before it published): the echo comes after the
// ids before it, read from the store, never ahead of them.
func TestAgainEchoWaitsForTheGap(t *testing.T) {
	tc := newTestCluster(t, "b", "x")
	tc.place([]string{"b", "x"}, "r", "x")
	store := persistence.NewMemory()
	hb := tc.hub(t, "b", store)
	sb := &captureSink{}
	cb := connect(t, hb, ConnSpec{UID: "ub", NickName: "B", Room: "r", Sink: sb})
	exactly(t, sb, 1)
	fwd := tc.listen(t, subjectForward+"x.r")

	// x stores 1 and 2 (2 is b's post) and is paused before it publishes.
	stored(t, store, "r", 1, 1, "ux", "theirs")
	mine := record(2, "ub", "mine")
	if err := store.AppendMessages("r", []persistence.Message{{ID: 2, Data: mine, CID: "c2"}}); err != nil {
		t.Fatal(err)
	}
	cb.Receive([]byte(`{"text":true,"content":"mine","cid":"c2"}`), false)
	m := next(t, fwd)
	var f fwdPost
	if err := json.Unmarshal(m.Data, &f); err != nil || f.CID != "c2" {
		t.Fatalf("forwarded %s (%v)", m.Data, err)
	}
	if err := m.Respond(mustJSON(t, fwdReply{ID: 2, Again: true})); err != nil {
		t.Fatal(err)
	}
	checkIDs(t, "b's member", exactly(t, sb, 4)[1:], "remote:1:theirs", "user:2:mine", "user:2:mine:c2")
}
