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
