package persistence

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Making a stream, "stream not found" is a race between nodes that go on
// making it: retried. Elsewhere it is an answer: returned at once.
func TestStreamNotFoundWhileCreating(t *testing.T) {
	notFound := &jetstream.APIError{Code: 404, ErrorCode: jetstream.JSErrCodeStreamNotFound, Description: "stream not found"}
	calls := 0
	f := func(context.Context) error {
		calls++
		if calls < 3 {
			return notFound
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := jsRetryCreate(ctx, "stream", f); err != nil || calls != 3 {
		t.Errorf("jsRetryCreate: %v after %d calls, want success after 3", err, calls)
	}
	calls = 0
	if err := jsRetry(ctx, "read", f); err == nil || calls != 1 {
		t.Errorf("jsRetry: %v after %d calls, want the not-found error at once", err, calls)
	}
}

// A read sent to a leader that is stepping down gets no answer: the attempt
// is given up after readAttempt, not a second, and the next one is longer.
func TestReadAttemptsAreShortThenGrow(t *testing.T) {
	var budgets []time.Duration
	f := func(ctx context.Context) error {
		d, _ := ctx.Deadline()
		budgets = append(budgets, time.Until(d))
		if len(budgets) < 4 {
			<-ctx.Done() // no answer
			return ctx.Err()
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := jsRetryEach(ctx, "read", readAttempt, f); err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{readAttempt, 2 * readAttempt, 4 * readAttempt, time.Second}
	for i, b := range budgets {
		if b > want[i] || b < want[i]-100*time.Millisecond {
			t.Errorf("attempt %d had %s, want about %s", i+1, b, want[i])
		}
	}
	if len(budgets) != 4 {
		t.Errorf("%d attempts, want 4", len(budgets))
	}
}
