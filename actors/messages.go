package actors

import (
	"github.com/asynkron/protoactor-go/actor"
	"github.com/pandachat/pandachat/protocol"
)

// Messages between actors. Pointers, never mutated after sending.

// join asks the registry (then the room) to add a member.
type join struct {
	Room     string
	Member   *Member
	PID      *actor.PID
	Since    uint64
	HasSince bool
}

// leave removes a member: sent by its conn actor when it stops, to the room
// (or through the registry when the join may still be on its way).
type leave struct {
	Room string
	ID   string
}

// assigned tells the conn actor, as soon as its join is on its way, which room
// will answer it: it watches that room, so a room that dies before the join
// is handled closes the connection instead of leaving it waiting.
type assigned struct{ Room *actor.PID }

// joined tells the conn actor that its system frame is queued: it may post.
type joined struct{ Room *actor.PID }

// kick closes a member behind everything the room owes it: pending messages
// are stored and their echoes queued first, then frame (if any) and the close.
type kick struct {
	ID     string
	Frame  []byte
	Code   int
	Reason string
}

// finishClose is queued by closeRoom behind the posts already in the mailbox,
// so that every post accepted before shutdown is stored and confirmed.
type finishClose struct{}

// sessionCheck makes a conn actor look at its session again when it expires.
type sessionCheck struct{}

// inbound is one client frame, copied out of the socket's buffer.
type inbound struct {
	Data   []byte
	Binary bool
}

// post is a validated message from a member; the room gives it an id.
type post struct {
	From      *Member
	NickName  string
	AvatarURL string
	Msg       protocol.ClientMessage
}

// flush is the room's self-sent "write the pending batch now"; it queues
// behind the posts already in the mailbox, so batches grow with load.
type flush struct{}

// roomIdle: an empty room offers to stop; Joins is how many joins it has seen.
type roomIdle struct {
	Name  string
	Joins uint64
}

// trimmed reports a finished background retention trim.
type trimmed struct{}

// shutdown asks the registry to close every room; it answers when all are gone.
type shutdown struct{}

// closeRoom makes a room flush, close its members with 1001 and stop.
type closeRoom struct{}

// roomStats asks the registry for counts (tests, /readyz).
type roomStats struct{}

// RoomStats is the answer to roomStats.
type RoomStats struct{ Rooms int }

// pingTick makes the room ping all its members: one shared frame, one timer per
// room instead of one per connection.
type pingTick struct{}

// retryTick asks a broken room's store again.
type retryTick struct{}
