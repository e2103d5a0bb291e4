package actors

import (
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
)

// workers is the hub's actor dispatcher: it runs mailboxes on goroutines that
// live on between runs instead of one new goroutine per run. A new goroutine
// starts on a small stack and grows it again for every message a room or a
// connection handles; a worker keeps the stack it grew. At most maxIdle
// workers wait for work; the others end when their run does.
type workers struct {
	work    chan func() // unbuffered: a send succeeds only when a worker waits
	stop    <-chan struct{}
	waiting atomic.Int32
	spawned atomic.Int64 // workers started (tests)
	maxIdle int32
}

var _ actor.Dispatcher = (*workers)(nil)

// maxIdleWorkers bounds the workers that wait for work: enough for the
// mailboxes that run at once on a busy server, few stacks when it is quiet.
const maxIdleWorkers = 64

// workerThroughput is how many messages a mailbox run handles before it
// yields (protoactor's default).
const workerThroughput = 300

// newWorkers returns a dispatcher whose waiting workers end once stop is closed.
func newWorkers(maxIdle int, stop <-chan struct{}) *workers {
	return &workers{work: make(chan func()), stop: stop, maxIdle: int32(maxIdle)}
}

func (w *workers) Schedule(fn func()) {
	select {
	case w.work <- fn:
	default:
		w.spawned.Add(1)
		go w.run(fn)
	}
}

func (w *workers) Throughput() int { return workerThroughput }

func (w *workers) run(fn func()) {
	for {
		fn()
		if w.waiting.Add(1) > w.maxIdle {
			w.waiting.Add(-1)
			return
		}
		select {
		case fn = <-w.work:
			w.waiting.Add(-1)
		case <-w.stop:
			w.waiting.Add(-1)
			return
		}
	}
}
