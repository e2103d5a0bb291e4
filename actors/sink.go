package actors

import (
	"sync/atomic"

	"github.com/pandachat/pandachat/protocol"
)

// Sink is a connection's outbound side, implemented by the transport.
// Both methods are called from actors and must never block.
type Sink interface {
	// Send queues complete WebSocket frames, all or none; false means the queue
	// is full (a slow consumer), and the caller treats the connection as gone.
	// A connection that is already closing or gone takes nothing and says true:
	// its leave is on the way. The slices are shared with other sinks: a sink
	// reads them and never writes them; the list itself is the caller's again
	// when Send returns.
	Send(frames ...[]byte) bool
	// Close queues last (the frame that says why, if any) and a close frame
	// behind what is already queued, then closes. It is one step: nothing that
	// another actor sends goes between last and the close.
	Close(code int, reason string, last ...[]byte)
}

// Member is one connection as a room sees it.
type Member struct {
	ID       string // the conn actor's PID id, unique per connection
	UID      string
	NickName string
	Sink     Sink
	Presence bool        // wants presence frames
	V2       bool        // speaks protocol version 2: gets events, mentions and typing notices
	Base     string      // scheme://host this member sees the server at: makes stored paths absolute
	gate     *gate       // the connection's frames in flight; nil in tests that build members by hand
	relay    *relayReply // a member of another node posting through this owner: answered when done

	joinedAt uint64      // the room's last stored id when it joined
	sent     uint64      // the last id the room handed to it while its socket was open
	since    bool        // it joined with a replay
	gone     atomic.Bool // its socket is closed: what the room sends now is not read
	dropped  atomic.Bool // closed as a slow consumer: its queue, unread, was discarded
}

// close closes the member's socket, behind last, and frees its read loop.
func (m *Member) close(code int, reason string, last ...[]byte) {
	if code == protocol.CloseSlowConsumer {
		m.dropped.Store(true) // before the close: the room must not count the queue as read
	}
	m.Sink.Close(code, reason, last...)
	if m.gate != nil {
		m.gate.close()
	}
}

// textFrames is frame as a WebSocket text frame, or nothing for no frame.
func textFrames(frame []byte) [][]byte {
	if frame == nil {
		return nil
	}
	return [][]byte{protocol.TextFrame(frame)}
}

// done gives back the credit of one frame of this member.
func (m *Member) done() {
	if m == nil {
		return
	}
	if m.gate != nil {
		m.gate.release()
	}
	if m.relay != nil {
		m.relay.finish()
	}
}
