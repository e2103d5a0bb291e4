// Package guard keeps a panic in one goroutine from ending the process: the
// panic is logged with its stack and only what that goroutine owned is closed.
package guard

import (
	"log/slog"
	"runtime/debug"
)

// Recover, deferred first thing in a goroutine, stops a panic there: it logs
// the value and the stack under what, then runs cleanup (when not nil) with the
// panic value, to close what the goroutine owned.
//
//	go func() {
//		defer guard.Recover(log, "debug listener", nil)
//		_ = srv.Serve(ln)
//	}()
func Recover(log *slog.Logger, what string, cleanup func(p any)) {
	p := recover()
	if p == nil {
		return
	}
	if log == nil {
		log = slog.Default()
	}
	log.Error("panic recovered", "in", what, "panic", p, "stack", string(debug.Stack()))
	if cleanup != nil {
		cleanup(p)
	}
}

// Go runs f in a new goroutine under Recover.
func Go(log *slog.Logger, what string, f func()) {
	go func() {
		defer Recover(log, what, nil)
		f()
	}()
}
