package actors

import "time"

// Observer is told what the actors do, for metrics. Calls come from actor
// goroutines and must be cheap and non-blocking.
type Observer interface {
	RoomStarted()
	RoomStopped()
	MessageIn()                                         // a client frame reached a conn actor
	Broadcast(msgs, deliveries int, took time.Duration) // one fan-out of a stored batch
	StoreWrite(took time.Duration, err error)
	SlowConsumer()
	RateLimited(closed bool)
	Event(kind string) // a recall, reaction, typing notice or message with mentions was accepted (Event* kinds)
}

// NopObserver ignores everything.
type NopObserver struct{}

func (NopObserver) RoomStarted()                      {}
func (NopObserver) RoomStopped()                      {}
func (NopObserver) MessageIn()                        {}
func (NopObserver) Broadcast(int, int, time.Duration) {}
func (NopObserver) StoreWrite(time.Duration, error)   {}
func (NopObserver) SlowConsumer()                     {}
func (NopObserver) RateLimited(bool)                  {}
func (NopObserver) Event(string)                      {}
