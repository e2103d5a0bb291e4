package actors

import (
	"errors"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"golang.org/x/time/rate"

	"github.com/pandachat/pandachat/persistence"
	"github.com/pandachat/pandachat/protocol"
)

// conn is the actor of one WebSocket connection: it validates and rate-limits
// what the client sends and posts it to its room.
type conn struct {
	hub     *Hub
	spec    ConnSpec
	member  *Member
	room    *actor.PID // the room that will answer (or has answered) our join
	joined  bool
	stash   []*inbound               // frames that arrived before the room answered the join
	limiter *rate.Limiter            // the user's, shared with its other connections
	profile *atomic.Pointer[profile] // the user's, shared too: no store read per message

	floodStart  time.Time // first refusal of the current run of refusals
	lastRefusal time.Time
	refused     bool // being closed: ignore whatever is still in the mailbox
	expiry      *time.Timer
}

func (c *conn) Receive(ctx actor.Context) {
	defer func() {
		if r := recover(); r != nil { // never restart with lost state: close, the client reconnects
			c.hub.log.Error("connection actor failed", "uid", c.spec.UID, "panic", r, "stack", string(debug.Stack()))
			c.member.close(protocol.CloseInternal, "internal error")
			ctx.Stop(ctx.Self())
		}
	}()
	switch m := ctx.Message().(type) {
	case *actor.Started:
		c.member.ID = ctx.Self().Id // the room matches leave notices by this id
		ctx.Send(c.hub.users, &attach{UID: c.spec.UID, Room: c.spec.Room, Session: c.spec.SessionID, PID: ctx.Self()})
		ctx.Send(c.hub.registry, &join{Room: c.spec.Room, Member: c.member, PID: ctx.Self(), Since: c.spec.Since, HasSince: c.spec.HasSince})
		c.armExpiry(ctx, c.spec.Expires)
	case *assigned:
		c.room = m.Room
		ctx.Watch(m.Room)
	case *joined:
		c.joined = true
		for _, in := range c.stash {
			c.receive(ctx, in)
		}
		c.stash = nil
	case *inbound:
		if c.refused {
			c.member.done()
			return
		}
		if !c.joined { // the gate bounds how much waits here
			c.stash = append(c.stash, m)
			return
		}
		c.receive(ctx, m)
	case sessionEnded:
		c.end(ctx, protocol.SessionError(protocol.ErrInvalidSession, "session ended; log in again"), protocol.ClosePolicy, "session ended")
	case sessionCheck:
		c.checkSession(ctx)
	case *actor.Stopping:
		if c.expiry != nil {
			c.expiry.Stop()
		}
		c.member.gate.close()
		ctx.Send(c.hub.users, &release{UID: c.spec.UID, Room: c.spec.Room, Session: c.spec.SessionID, PID: ctx.Self()})
		// The room learns of the departure from us; it does not watch connections
		// (that would cost each one an actor-context extras block).
		if c.room != nil {
			ctx.Unwatch(c.room) // else the room keeps this actor reachable for its whole life
			ctx.Send(c.room, &leave{Room: c.spec.Room, ID: c.member.ID})
		} else {
			ctx.Send(c.hub.registry, &leave{Room: c.spec.Room, ID: c.member.ID}) // behind our join
		}
	case *actor.Terminated:
		if c.room != nil && m.Who.Id == c.room.Id {
			c.refused = true
			c.member.close(protocol.CloseInternal, "room restarted, reconnect with since")
		}
	}
}

func (c *conn) receive(ctx actor.Context, in *inbound) {
	c.hub.obs.MessageIn()
	// Every frame counts against the rate, bad and binary ones too.
	allowed := c.limiter == nil || c.limiter.AllowN(c.hub.now(), 1)
	if in.Binary {
		c.member.done()
		c.refuseOrEnd(ctx, allowed, protocol.ErrBadMessage, "binary frames are not accepted; send JSON text", nil)
		return
	}
	var (
		msg protocol.ClientMessage
		bad *protocol.BadMessage
	)
	if c.member.V2 {
		msg, bad = protocol.ParseClientMessageV2(in.Data, c.hub.opts.MaxContent)
	} else {
		msg, bad = protocol.ParseClientMessage(in.Data, c.hub.opts.MaxContent)
	}
	if !allowed || bad != nil {
		cid := msg.CIDRef()
		if bad != nil {
			cid = bad.CIDRef()
		}
		c.member.done()
		reason := "too many messages; slow down"
		if bad != nil {
			reason = bad.Reason
		}
		c.refuseOrEnd(ctx, allowed, protocol.ErrBadMessage, reason, cid)
		return
	}
	if msg.Kind == protocol.KindGallery {
		abs, err := c.resolve(msg.URL)
		if err != nil {
			c.member.done()
			c.refuse(protocol.ErrBadMessage, "bad url: "+err.Error(), msg.CIDRef())
			return
		}
		msg.URL = abs
	}
	if msg.Ext != nil && msg.Ext.Mentions != "" {
		if code, why := c.checkMentions(msg.Ext.Mentions); why != "" {
			c.member.done()
			c.refuse(code, why, msg.CIDRef())
			return
		}
	}
	p := c.profile.Load() // profile changes apply to the next message
	// Paths of this server stay paths in the store; every recipient gets them
	// absolute with its own base, so no client's Host header reaches another.
	avatar := strings.TrimPrefix(p.AvatarURL, c.spec.Base)
	ctx.Send(c.room, &post{From: c.member, NickName: p.NickName, AvatarURL: avatar, Msg: msg}) // the room gives the credit back
}

// refuseOrEnd answers a refused frame: over the rate it is ERR_RATE_LIMITED,
// or the close when the refusals have become a flood.
func (c *conn) refuseOrEnd(ctx actor.Context, allowed bool, code, message string, cid *string) {
	if allowed {
		c.refuse(code, message, cid)
		return
	}
	if c.flooding() {
		c.hub.obs.RateLimited(true)
		c.end(ctx, nil, protocol.ClosePolicy, "rate limit exceeded")
		return
	}
	c.hub.obs.RateLimited(false)
	c.refuse(protocol.ErrRateLimited, "too many messages; slow down", cid)
}

// flooding records a refusal and reports whether refusals have kept coming
// for floodAfter, with no pause of floodPause between two of them.
func (c *conn) flooding() bool {
	now := c.hub.now()
	if c.lastRefusal.IsZero() || now.Sub(c.lastRefusal) >= floodPause {
		c.floodStart = now
	}
	c.lastRefusal = now
	return now.Sub(c.floodStart) >= floodAfter
}

// end closes the connection behind everything the room owes it (the echoes of
// messages it accepted from this connection come first), then frame and close.
func (c *conn) end(ctx actor.Context, frame []byte, code int, reason string) {
	if c.refused {
		return
	}
	c.refused = true
	for range c.stash {
		c.member.done()
	}
	c.stash = nil
	if c.joined {
		ctx.Send(c.room, &kick{ID: c.member.ID, Frame: frame, Code: code, Reason: reason})
		return
	}
	// The room may be answering our join right now: frame and close go as one.
	c.member.close(code, reason, textFrames(frame)...)
}

// armExpiry looks at the session again when it is due to end.
func (c *conn) armExpiry(ctx actor.Context, at time.Time) {
	if c.spec.SessionID == "" || at.IsZero() {
		return
	}
	self, root := ctx.Self(), ctx.ActorSystem().Root
	c.expiry = time.AfterFunc(time.Until(at)+10*time.Millisecond, func() { root.Send(self, sessionCheck{}) })
}

func (c *conn) checkSession(ctx actor.Context) {
	s, err := c.hub.store.Session(c.spec.SessionID)
	switch {
	case err == nil && s.Expires.After(time.Now()):
		c.armExpiry(ctx, s.Expires) // renewed
	case err == nil || errors.Is(err, persistence.ErrNotFound):
		c.end(ctx, protocol.SessionError(protocol.ErrInvalidSession, "session expired; log in again"), protocol.ClosePolicy, "session expired")
	default: // the store cannot say: look again soon rather than cut a live session
		c.armExpiry(ctx, time.Now().Add(5*time.Second))
	}
}

// checkMentions makes sure every uid mentioned is a member of the room: a user
// who has joined it (it is one of the user's rooms). A store that does not keep
// rooms per user cannot tell, and the uids pass as they are.
func (c *conn) checkMentions(list string) (code, why string) {
	for uid := range strings.SplitSeq(list, ",") {
		_, err := c.hub.store.ReadPosition(uid, c.spec.Room)
		switch {
		case err == nil, errors.Is(err, persistence.ErrUnsupported):
		case errors.Is(err, persistence.ErrNotFound):
			return protocol.ErrBadMessage, "mentions: " + uid + " is not a member of this room"
		default:
			c.hub.log.Warn("mentions could not be checked", "room", c.spec.Room, "err", err)
			return protocol.ErrUnavailable, "mentions cannot be checked right now, message not stored"
		}
	}
	return "", ""
}

func (c *conn) resolve(raw string) (string, error) {
	if c.spec.Resolve == nil {
		return "", errNoMedia
	}
	return c.spec.Resolve(raw)
}

func (c *conn) refuse(code, message string, cid *string) {
	if !c.member.Sink.Send(protocol.TextFrame(protocol.ErrorFrame(code, message, cid))) {
		c.member.close(protocol.CloseSlowConsumer, "slow consumer")
	}
}
