package actors

import (
	"encoding/json"
	"testing"
	"time"

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

// A forwarded post the owner stored and answered, but whose batch never came
// (the owner stopped first): the message is read from the store, and it is
// still its sender's echo, with the cid, not someone else's copy.
func TestEchoOfAStoredPostWhoseBatchNeverCame(t *testing.T) {
	for _, moves := range []bool{false, true} {
		name := "gap check"
		if moves {
			name = "room moves here"
		}
		t.Run(name, func(t *testing.T) {
			tc := newTestCluster(t, "b", "x")
			tc.place([]string{"b", "x"}, "r", "x")
			store := persistence.NewMemory()
			hb := tc.hub(t, "b", store)
			sb, so := &captureSink{}, &captureSink{}
			cb := connect(t, hb, ConnSpec{UID: "ub", NickName: "B", Room: "r", Sink: sb})
			exactly(t, sb, 1)
			co := connect(t, hb, ConnSpec{UID: "uo", NickName: "O", Room: "r", Sink: so})
			exactly(t, so, 1)
			fwd := tc.listen(t, subjectForward+"x.r")

			cb.Receive([]byte(`{"text":true,"content":"mine","cid":"c1"}`), false)
			m := next(t, fwd)
			if err := store.AppendMessages("r", []persistence.Message{{ID: 1, Data: record(1, "ub", "mine"), CID: "c1"}}); err != nil {
				t.Fatal(err)
			}
			if err := m.Respond(mustJSON(t, fwdReply{ID: 1})); err != nil {
				t.Fatal(err)
			}
			if moves { // x leaves before its gap check: b owns the room and reads the store at the next post
				tc.place([]string{"b"}, "r", "b")
				waitFor(t, func() bool { return testNode{tc, "b"}.Owner("r") == "b" })
				time.Sleep(3 * livePoll) // the hub sees the live set change
				co.Receive(text("next"), false)
				checkIDs(t, "the other member", exactly(t, so, 3)[1:], "remote:1:mine", "user:2:next")
				checkIDs(t, "the sender", exactly(t, sb, 3)[1:], "user:1:mine:c1", "remote:2:next")
				return
			}
			checkIDs(t, "the sender", exactly(t, sb, 2)[1:], "user:1:mine:c1")
		})
	}
}
