package faultstore_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pandachat/pandachat/internal/faultstore"
	"github.com/pandachat/pandachat/persistence"
)

func open(t *testing.T) *faultstore.Store {
	t.Helper()
	b, err := persistence.OpenBadger(t.TempDir(), persistence.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := faultstore.New(b)
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// batch makes messages with ids from..to.
func batch(from, to uint64) []persistence.Message {
	var ms []persistence.Message
	for id := from; id <= to; id++ {
		ms = append(ms, persistence.Message{ID: id, Data: fmt.Appendf(nil, `{"id":%d}`, id), CID: fmt.Sprint("c", id)})
	}
	return ms
}

// stored is what the real store holds for room: its last id and its message ids.
func stored(t *testing.T, s persistence.Store, room string) (uint64, []uint64) {
	t.Helper()
	last, err := s.LastID(room)
	if err != nil {
		t.Fatalf("LastID: %v", err)
	}
	ms, err := s.MessagesAfter(room, 0, 1000)
	if err != nil {
		t.Fatalf("MessagesAfter: %v", err)
	}
	var ids []uint64
	for _, m := range ms {
		ids = append(ids, m.ID)
	}
	return last, ids
}

func ids(from, to uint64) []uint64 {
	var out []uint64
	for id := from; id <= to; id++ {
		out = append(out, id)
	}
	return out
}

func sameIDs(a, b []uint64) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

func TestPassThrough(t *testing.T) {
	s := open(t)
	if err := s.AppendMessages("r", batch(1, 3)); err != nil {
		t.Fatal(err)
	}
	ms, err := s.MessagesBefore("r", 100, 10)
	if err != nil || len(ms) != 3 || ms[2].CID != "c3" {
		t.Fatalf("MessagesBefore = %v, %v", ms, err)
	}
	if last, got := stored(t, s, "r"); last != 3 || !sameIDs(got, ids(1, 3)) {
		t.Fatalf("last %d, ids %v", last, got)
	}
	u := persistence.User{UID: "u1", Profile: persistence.Profile{NickName: "mei"}}
	if err := s.PutUser(u); err != nil {
		t.Fatal(err)
	}
	if got, err := s.User("u1"); err != nil || got.Profile.NickName != "mei" {
		t.Fatalf("User = %+v, %v", got, err)
	}
	for method, want := range map[string]int{
		faultstore.AppendMessages: 1, faultstore.MessagesBefore: 1, faultstore.LastID: 1,
		faultstore.MessagesAfter: 1, faultstore.PutUser: 1, faultstore.User: 1, faultstore.Media: 0,
	} {
		if got := s.Calls(method); got != want {
			t.Errorf("Calls(%s) = %d, want %d", method, got, want)
		}
	}
	if s.Injected() != 0 {
		t.Errorf("Injected = %d with nothing armed", s.Injected())
	}
}

func TestFailWrites(t *testing.T) {
	s := open(t)
	s.FailWrites(2)
	for i := 0; i < 2; i++ {
		if err := s.AppendMessages("r", batch(1, 2)); !errors.Is(err, faultstore.ErrInjected) {
			t.Fatalf("write %d: err = %v, want ErrInjected", i, err)
		}
	}
	if last, got := stored(t, s, "r"); last != 0 || len(got) != 0 {
		t.Fatalf("a failed write stored something: last %d, ids %v", last, got)
	}
	if err := s.AppendMessages("r", batch(1, 2)); err != nil {
		t.Fatalf("third write: %v", err)
	}

	s.FailWrites(faultstore.Always)
	for i := 0; i < 5; i++ {
		if err := s.AppendMessages("r", batch(3, 3)); !errors.Is(err, faultstore.ErrInjected) {
			t.Fatalf("always, write %d: err = %v", i, err)
		}
	}
	s.Clear()
	if err := s.AppendMessages("r", batch(3, 3)); err != nil {
		t.Fatalf("after Clear: %v", err)
	}
	if last, got := stored(t, s, "r"); last != 3 || !sameIDs(got, ids(1, 3)) {
		t.Fatalf("last %d, ids %v", last, got)
	}
	if got := s.Injected(); got != 7 {
		t.Errorf("Injected = %d, want 7", got)
	}
	if got := s.Calls(faultstore.AppendMessages); got != 9 {
		t.Errorf("Calls = %d, want 9", got)
	}
}

func TestHalfCommit(t *testing.T) {
	s := open(t)
	if err := s.AppendMessages("r", batch(1, 2)); err != nil {
		t.Fatal(err)
	}
	s.HalfCommit(3)
	err := s.AppendMessages("r", batch(3, 10))
	if !errors.Is(err, faultstore.ErrInjected) || !strings.Contains(err.Error(), "3 of 8") {
		t.Fatalf("half commit: err = %v", err)
	}
	if last, got := stored(t, s, "r"); last != 5 || !sameIDs(got, ids(1, 5)) {
		t.Fatalf("after a half commit of 3: last %d, ids %v; want the prefix 1..5", last, got)
	}
	// Armed once: the next batch is stored whole.
	if err := s.AppendMessages("r", batch(6, 7)); err != nil {
		t.Fatal(err)
	}
	// A batch no longer than k is stored whole and still fails.
	s.HalfCommit(5)
	if err := s.AppendMessages("r", batch(8, 9)); !errors.Is(err, faultstore.ErrInjected) {
		t.Fatalf("short batch: err = %v", err)
	}
	if last, got := stored(t, s, "r"); last != 9 || !sameIDs(got, ids(1, 9)) {
		t.Fatalf("last %d, ids %v", last, got)
	}
	ms, _ := s.MessagesAfter("r", 4, 1)
	if len(ms) != 1 || ms[0].CID != "c5" {
		t.Errorf("the stored prefix lost its cid: %+v", ms)
	}
}

func TestFailAfterCommit(t *testing.T) {
	s := open(t)
	s.FailAfterCommit(1)
	if err := s.AppendMessages("r", batch(1, 4)); !errors.Is(err, faultstore.ErrInjected) {
		t.Fatalf("err = %v", err)
	}
	if last, got := stored(t, s, "r"); last != 4 || !sameIDs(got, ids(1, 4)) {
		t.Fatalf("after-commit failure must store the batch: last %d, ids %v", last, got)
	}
	if err := s.AppendMessages("r", batch(5, 5)); err != nil {
		t.Fatalf("armed once, failed twice: %v", err)
	}
	// A failure armed before it wins over the after-commit one: nothing stored.
	s.FailAfterCommit(1)
	s.FailWrites(1)
	if err := s.AppendMessages("r", batch(6, 6)); !errors.Is(err, faultstore.ErrInjected) {
		t.Fatal(err)
	}
	if last, _ := stored(t, s, "r"); last != 5 {
		t.Fatalf("last %d, want 5", last)
	}
	if err := s.AppendMessages("r", batch(6, 6)); !errors.Is(err, faultstore.ErrInjected) {
		t.Fatalf("the after-commit failure is still armed: %v", err)
	}
	if last, _ := stored(t, s, "r"); last != 6 {
		t.Fatalf("last %d, want 6", last)
	}
}

func TestFailReads(t *testing.T) {
	s := open(t)
	if err := s.AppendMessages("r", batch(1, 3)); err != nil {
		t.Fatal(err)
	}
	s.FailReads(2)
	if _, err := s.LastID("r"); !errors.Is(err, faultstore.ErrInjected) {
		t.Fatalf("LastID: %v", err)
	}
	if _, err := s.MessagesAfter("r", 0, 10); !errors.Is(err, faultstore.ErrInjected) {
		t.Fatalf("MessagesAfter: %v", err)
	}
	if last, got := stored(t, s, "r"); last != 3 || len(got) != 3 {
		t.Fatalf("third read: last %d, ids %v", last, got)
	}
	// Writes and history pages are not reads of this kind.
	s.FailReads(faultstore.Always)
	if err := s.AppendMessages("r", batch(4, 4)); err != nil {
		t.Fatal(err)
	}
	if ms, err := s.MessagesBefore("r", 100, 10); err != nil || len(ms) != 4 {
		t.Fatalf("MessagesBefore: %v %v", ms, err)
	}
	for i := 0; i < 3; i++ {
		if _, err := s.LastID("r"); !errors.Is(err, faultstore.ErrInjected) {
			t.Fatalf("always, read %d: %v", i, err)
		}
	}
	s.Clear()
	if last, _ := stored(t, s, "r"); last != 4 {
		t.Fatalf("after Clear: last %d", last)
	}
}

func TestPanicOn(t *testing.T) {
	s := open(t)
	call := func(f func()) (p any) {
		defer func() { p = recover() }()
		f()
		return nil
	}
	s.PanicOn(faultstore.AppendMessages)
	p := call(func() { _ = s.AppendMessages("r", batch(1, 1)) })
	if p == nil || !strings.Contains(fmt.Sprint(p), "AppendMessages") {
		t.Fatalf("panic = %v", p)
	}
	if last, _ := stored(t, s, "r"); last != 0 {
		t.Fatalf("a panicking write stored something: last %d", last)
	}
	if p := call(func() { _ = s.AppendMessages("r", batch(1, 1)) }); p != nil {
		t.Fatalf("armed once, panicked twice: %v", p)
	}
	s.PanicOn(faultstore.MessagesAfter)
	if p := call(func() { _, _ = s.LastID("r") }); p != nil {
		t.Fatalf("LastID panicked for a MessagesAfter panic: %v", p)
	}
	if p := call(func() { _, _ = s.MessagesAfter("r", 0, 1) }); p == nil {
		t.Fatal("MessagesAfter did not panic")
	}
	s.PanicOn(faultstore.Session)
	if p := call(func() { _, _ = s.Session("x") }); p == nil {
		t.Fatal("Session did not panic")
	}
	if got := s.Calls(faultstore.AppendMessages); got != 2 {
		t.Errorf("Calls counts panicking calls too: %d, want 2", got)
	}
}

func TestStallWrites(t *testing.T) {
	s := open(t)
	s.StallWrites()
	s.FailWrites(1) // met by the first stalled call once it goes on
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.AppendMessages(fmt.Sprint("r", i), batch(1, 1))
		}()
	}
	for range errs {
		select {
		case m := <-s.Stalled():
			if m != faultstore.AppendMessages {
				t.Fatalf("stalled %s", m)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no stalled call reported")
		}
	}
	// Reads are not stalled, and nothing has been stored while the writes wait.
	for _, room := range []string{"r0", "r1"} {
		if last, _ := stored(t, s, room); last != 0 {
			t.Fatalf("%s: a stalled write was stored (last %d)", room, last)
		}
	}
	s.Release()
	wg.Wait()
	failed := 0
	for _, err := range errs {
		if errors.Is(err, faultstore.ErrInjected) {
			failed++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if failed != 1 {
		t.Fatalf("%d of the released writes failed, want exactly 1: %v", failed, errs)
	}
	// Released: later writes do not block.
	if err := s.AppendMessages("r2", batch(1, 1)); err != nil {
		t.Fatal(err)
	}
}

func TestStallReads(t *testing.T) {
	s := open(t)
	if err := s.AppendMessages("r", batch(1, 2)); err != nil {
		t.Fatal(err)
	}
	s.StallReads()
	got := make(chan []persistence.Message)
	go func() {
		ms, _ := s.MessagesAfter("r", 0, 10)
		got <- ms
	}()
	if m := <-s.Stalled(); m != faultstore.MessagesAfter {
		t.Fatalf("stalled %s", m)
	}
	// Writes go on while reads are stalled.
	if err := s.AppendMessages("r", batch(3, 3)); err != nil {
		t.Fatal(err)
	}
	s.Clear() // Clear releases too
	if ms := <-got; len(ms) != 3 {
		t.Fatalf("the released read saw %d messages, want the 3 stored by then", len(ms))
	}
}

// Many goroutines arm, meet and clear faults at once; run with -race.
func TestConcurrent(t *testing.T) {
	s := open(t)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			room := fmt.Sprint("r", g)
			next := uint64(1)
			for i := 0; i < 100; i++ {
				switch i % 5 {
				case 0:
					s.FailWrites(1)
				case 1:
					s.HalfCommit(1)
				case 2:
					s.FailAfterCommit(1)
				case 3:
					s.FailReads(1)
				}
				_ = s.AppendMessages(room, batch(next, next+1))
				if last, err := s.LastID(room); err == nil {
					next = last + 1
				}
				_, _ = s.MessagesAfter(room, 0, 5)
			}
		}()
	}
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
				s.StallWrites()
				time.Sleep(time.Millisecond)
				s.Release()
			}
		}
	}()
	wg.Wait()
	close(stop)
	s.Clear()
	if got := s.Calls(faultstore.AppendMessages); got != 400 {
		t.Errorf("Calls = %d, want 400", got)
	}
}
