package actors

// Sink is a connection's outbound side, implemented by the transport.
// Both methods are called from actors and must never block.
type Sink interface {
	// Send queues complete WebSocket frames, all or none; false means the queue
	// is full or closed, and the caller treats the connection as gone. The
	// slices are shared with other sinks: a sink reads them and never writes them.
	Send(frames ...[]byte) bool
	// Close sends a close frame behind what is already queued, then closes.
	Close(code int, reason string)
}

// Member is one connection as a room sees it.
type Member struct {
	ID       string // the conn actor's PID id, unique per connection
	UID      string
	NickName string
	Sink     Sink
	Presence bool   // wants presence frames
	Base     string // scheme://host this member sees the server at: makes stored paths absolute
}
