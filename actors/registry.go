package actors

import (
	"maps"
	"slices"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/pandachat/pandachat/protocol"
)

// registry finds rooms by name, creating them on first join. Every join passes
// through it, so it knows when an idle room may stop without losing a join.
type registry struct {
	hub     *Hub
	rooms   map[string]*roomRef
	names   map[string]string // room actor id → room name
	closing bool
	waiter  *actor.PID                // who asked for shutdown
	counts  map[string]map[string]int // several nodes: room → node → its members there
	runs    nodeRuns                  // several nodes: the run of each node its counts are from
}

type roomRef struct {
	pid   *actor.PID
	joins uint64 // joins and forwarded posts sent to it; equals the room's count when none is in flight
}

func (g *registry) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *join:
		g.join(ctx, m)
	case *leave:
		if ref := g.rooms[m.Room]; ref != nil {
			ctx.Send(ref.pid, m)
		}
	case *roomIdle:
		if ref := g.rooms[m.Name]; ref != nil && ref.joins == m.Joins {
			delete(g.rooms, m.Name)
			ctx.Poison(ref.pid)
		}
	case *actor.Terminated:
		if name, ok := g.names[m.Who.Id]; ok {
			delete(g.names, m.Who.Id)
			if ref := g.rooms[name]; ref != nil && ref.pid.Id == m.Who.Id {
				delete(g.rooms, name) // died without asking: the next join starts a fresh one
			}
		}
		g.maybeDone(ctx)
	case *shutdown:
		g.closing, g.waiter = true, ctx.Sender()
		for _, ref := range g.rooms {
			ctx.Send(ref.pid, closeRoom{})
		}
		g.maybeDone(ctx)
	case *remotePost:
		if g.closing {
			respond(m.msg, fwdReply{Moved: true}) // the sender asks the next owner
			return
		}
		ctx.Send(g.room(ctx, m.Room).pid, m)
	case *relayMsg: // a count from another node
		if g.current(ctx, m.Node, m.Epoch) {
			g.count(ctx, m)
		}
	case nodeStarted:
		g.current(ctx, m.Node, m.Epoch)
	case liveChanged:
		g.pruneCounts()
		for _, ref := range g.rooms {
			ctx.Send(ref.pid, m)
		}
	case *roomStats:
		ctx.Respond(&RoomStats{Rooms: len(g.rooms)})
	}
}

func (g *registry) join(ctx actor.Context, m *join) {
	if g.closing {
		m.Member.close(protocol.CloseGoingAway, "server shutting down")
		return
	}
	ref := g.room(ctx, m.Room)
	// assigned goes first: the room's joined must find it in the conn's
	// mailbox ahead of itself, or the conn posts to a room it does not know.
	ctx.Send(m.PID, &assigned{Room: ref.pid})
	ctx.Send(ref.pid, m)
}

// room finds or starts the room name for a join or a forwarded post, which
// it counts: the room stops when idle only if it has seen them all.
func (g *registry) room(ctx actor.Context, name string) *roomRef {
	ref := g.rooms[name]
	if ref == nil {
		remote := maps.Clone(g.counts[name])
		props := actor.PropsFromProducer(func() actor.Actor {
			r := newRoom(name, g.hub)
			r.remote = remote
			return r
		}, actor.WithDispatcher(g.hub.workers))
		pid := ctx.SpawnPrefix(props, "room-"+name+"-")
		ref = &roomRef{pid: pid}
		g.rooms[name] = ref
		g.names[pid.Id] = name
	}
	ref.joins++
	return ref
}

// count keeps another node's member count of a room, and tells the room.
func (g *registry) count(ctx actor.Context, m *relayMsg) {
	if ref := g.rooms[m.Room]; ref != nil {
		ctx.Send(ref.pid, m)
	}
	c := g.counts[m.Room]
	if m.N <= 0 {
		delete(c, m.Node)
		if len(c) == 0 {
			delete(g.counts, m.Room)
		}
		return
	}
	if c == nil {
		if g.counts == nil {
			g.counts = map[string]map[string]int{}
		}
		c = map[string]int{}
		g.counts[m.Room] = c
	}
	c[m.Node] = m.N
}

// current says whether what node said in its run epoch still counts. A
// newer run drops the counts of the older one: its members are gone.
func (g *registry) current(ctx actor.Context, node string, epoch int64) bool {
	current, newer := g.runs.see(node, epoch)
	if newer {
		for room, c := range g.counts {
			if _, ok := c[node]; ok {
				g.count(ctx, &relayMsg{T: relayCount, Node: node, Room: room})
			}
		}
	}
	return current
}

// pruneCounts forgets the counts of nodes that are down: their members are gone.
func (g *registry) pruneCounts() {
	live := g.hub.opts.Nodes.Live()
	for room, c := range g.counts {
		for node := range c {
			if !slices.Contains(live, node) {
				delete(c, node)
			}
		}
		if len(c) == 0 {
			delete(g.counts, room)
		}
	}
}

func (g *registry) maybeDone(ctx actor.Context) {
	if g.closing && g.waiter != nil && len(g.names) == 0 {
		ctx.Send(g.waiter, &RoomStats{})
		g.waiter = nil
	}
}

// stopOnPanic stops a failed room instead of restarting it with empty state; its
// members see the room terminate and are closed so that they reconnect with since.
func stopOnPanic(h *Hub) actor.SupervisorStrategy {
	return actor.NewOneForOneStrategy(0, 0, func(reason any) actor.Directive {
		h.log.Error("actor failed; stopping it", "reason", reason)
		return actor.StopDirective
	})
}
