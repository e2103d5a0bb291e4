package actors

import (
	"testing"
	"time"
)

// within receives from ch, failing the test after 10 s: a test waiting for
// a stalled write that never comes fails instead of hanging.
func within[T any](t testing.TB, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("nothing came within 10s")
	}
	var zero T
	return zero
}
