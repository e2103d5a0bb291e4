package actors

import (
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
	waiter  *actor.PID // who asked for shutdown
}

type roomRef struct {
	pid   *actor.PID
	joins uint64 // joins forwarded; equals the room's count when none is in flight
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
	case *roomStats:
		ctx.Respond(&RoomStats{Rooms: len(g.rooms)})
	}
}

func (g *registry) join(ctx actor.Context, m *join) {
	if g.closing {
		m.Member.close(protocol.CloseGoingAway, "server shutting down")
		return
	}
	ref := g.rooms[m.Room]
	if ref == nil {
		name := m.Room
		props := actor.PropsFromProducer(func() actor.Actor { return newRoom(name, g.hub) })
		pid := ctx.SpawnPrefix(props, "room-"+name+"-")
		ref = &roomRef{pid: pid}
		g.rooms[name] = ref
		g.names[pid.Id] = name
	}
	ref.joins++
	ctx.Send(ref.pid, m)
	ctx.Send(m.PID, &assigned{Room: ref.pid})
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
