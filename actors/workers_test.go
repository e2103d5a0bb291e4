package actors

import (
	"sync"
	"testing"
)

// The dispatcher runs every function once; a blocked run never holds up the
// next one; a finished worker waits for the next run (at most maxIdle of
// them) and takes it; closing stop ends the waiting ones.
func TestWorkers(t *testing.T) {
	stop := make(chan struct{})
	w := newWorkers(2, stop)

	release := make(chan struct{})
	var started, done sync.WaitGroup
	for range 5 { // five at once: none waits for another
		started.Add(1)
		done.Add(1)
		w.Schedule(func() {
			started.Done()
			<-release
			done.Done()
		})
	}
	started.Wait()
	close(release)
	done.Wait()
	waitFor(t, func() bool { return w.waiting.Load() == 2 }) // three ended, two wait

	ran := make(chan struct{})
	w.Schedule(func() { close(ran) })
	<-ran
	if n := w.spawned.Load(); n != 5 {
		t.Fatalf("%d workers started for six runs; a waiting one should have taken the sixth", n)
	}
	waitFor(t, func() bool { return w.waiting.Load() == 2 }) // the worker that ran it waits again

	close(stop)
	waitFor(t, func() bool { return w.waiting.Load() == 0 })
	ran = make(chan struct{})
	w.Schedule(func() { close(ran) }) // after the stop: still run
	<-ran
}
