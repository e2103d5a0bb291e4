package guard

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func explode() { panic("injected panic") }

// A panic in a guarded goroutine is logged with its stack, the cleanup sees
// the value, and the process (this test) goes on.
func TestRecover(t *testing.T) {
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	got := make(chan any, 1)
	go func() {
		defer Recover(log, "test goroutine", func(p any) { got <- p })
		explode()
	}()
	if p := <-got; p != "injected panic" {
		t.Fatalf("cleanup got %v", p)
	}
	out := logs.String()
	for _, want := range []string{"panic recovered", "test goroutine", "injected panic", "goroutine ", "guard.explode"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

// Go guards the goroutine it starts; without a panic nothing is logged.
func TestGo(t *testing.T) {
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	done := make(chan struct{})
	Go(log, "quiet", func() { close(done) })
	<-done
	var wg sync.WaitGroup
	wg.Add(1)
	Go(log, "loud", func() { defer wg.Done(); explode() })
	wg.Wait()
	// The deferred Done runs before Recover logs; wait for the log line.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logs.String(), "loud") && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	out := logs.String()
	if strings.Contains(out, "quiet") || !strings.Contains(out, "loud") || !strings.Contains(out, "injected panic") {
		t.Errorf("log:\n%s", out)
	}
}
