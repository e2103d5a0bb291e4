package actors

import (
	"strings"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
	"golang.org/x/time/rate"

	"github.com/pandachat/pandachat/protocol"
)

// conn is the actor of one WebSocket connection: it validates and rate-limits
// what the client sends and posts it to its room.
type conn struct {
	hub      *Hub
	spec     ConnSpec
	member   *Member
	room     *actor.PID
	stash    []*inbound // frames that arrived before the room answered the join
	limiter  *rate.Limiter
	strikes  int          // refused frames in a row
	inflight atomic.Int32 // frames sent by the read loop and not yet handled
	refused  bool         // closed for flooding: ignore whatever is still in the mailbox
}

// maxStash bounds what a client may send before its join completes.
const maxStash = 64

func (c *conn) Receive(ctx actor.Context) {
	defer func() {
		if r := recover(); r != nil { // never restart with lost state: close, the client reconnects
			c.hub.log.Error("connection actor failed", "uid", c.spec.UID, "panic", r)
			c.member.Sink.Close(protocol.CloseInternal, "internal error")
			ctx.Stop(ctx.Self())
		}
	}()
	switch m := ctx.Message().(type) {
	case *actor.Started:
		c.member.ID = ctx.Self().Id // the room matches Terminated notices by this id
		ctx.Send(c.hub.registry, &join{Room: c.spec.Room, Member: c.member, PID: ctx.Self(), Since: c.spec.Since, HasSince: c.spec.HasSince})
	case *joined:
		c.room = m.Room
		ctx.Watch(m.Room)
		for _, in := range c.stash {
			c.receive(ctx, in)
		}
		c.stash = nil
	case *inbound:
		c.inflight.Add(-1)
		if c.refused {
			return
		}
		if c.room == nil {
			if len(c.stash) >= maxStash {
				c.refused, c.stash = true, nil // nothing of a refused connection is posted
				c.member.Sink.Close(protocol.ClosePolicy, "too many frames before the room answered")
				return
			}
			c.stash = append(c.stash, m)
			return
		}
		c.receive(ctx, m)
	case *actor.Stopping:
		// The room learns of the departure from us; watching every connection would
		// cost each one an actor-context extras block.
		if c.room != nil {
			ctx.Send(c.room, &leave{Room: c.spec.Room, ID: c.member.ID})
		} else {
			ctx.Send(c.hub.registry, &leave{Room: c.spec.Room, ID: c.member.ID}) // behind our join
		}
	case *actor.Terminated:
		if c.room != nil && m.Who.Id == c.room.Id {
			c.member.Sink.Close(protocol.CloseInternal, "room restarted, reconnect with since")
		}
	}
}

func (c *conn) receive(ctx actor.Context, in *inbound) {
	c.hub.obs.MessageIn()
	allowed := c.limiter == nil || c.limiter.Allow()
	if in.Binary {
		c.refuse(protocol.ErrBadMessage, "binary frames are not accepted; send JSON text", nil)
		return
	}
	msg, bad := protocol.ParseClientMessage(in.Data, c.hub.opts.MaxContent)
	cid := msg.CIDRef()
	if bad != nil {
		cid = bad.CIDRef()
	}
	if !allowed {
		c.strikes++
		if c.strikes >= c.hub.opts.floodStrikes() {
			c.refused = true
			c.hub.obs.RateLimited(true)
			c.member.Sink.Close(protocol.ClosePolicy, "rate limit exceeded")
			return
		}
		c.hub.obs.RateLimited(false)
		c.refuse(protocol.ErrRateLimited, "too many messages; slow down", cid)
		return
	}
	c.strikes = 0
	if bad != nil {
		c.refuse(protocol.ErrBadMessage, bad.Reason, cid)
		return
	}
	if msg.Kind == protocol.KindGallery {
		abs, err := c.resolve(msg.URL)
		if err != nil {
			c.refuse(protocol.ErrBadMessage, "bad url: "+err.Error(), cid)
			return
		}
		msg.URL = abs
	}
	nick, avatar := c.spec.NickName, c.spec.AvatarURL
	if u, err := c.hub.store.User(c.spec.UID); err == nil { // profile changes apply to the next message
		nick, avatar = u.Profile.NickName, u.Profile.AvatarURL
	}
	// Paths of this server stay paths in the store; every recipient gets them
	// absolute with its own base, so no client's Host header reaches another.
	avatar = strings.TrimPrefix(avatar, c.spec.Base)
	ctx.Send(c.room, &post{From: c.member, NickName: nick, AvatarURL: avatar, Msg: msg})
}

func (c *conn) resolve(raw string) (string, error) {
	if c.spec.Resolve == nil {
		return "", errNoMedia
	}
	return c.spec.Resolve(raw)
}

func (c *conn) refuse(code, message string, cid *string) {
	if !c.member.Sink.Send(protocol.TextFrame(protocol.ErrorFrame(code, message, cid))) {
		c.member.Sink.Close(protocol.CloseSlowConsumer, "slow consumer")
	}
}
