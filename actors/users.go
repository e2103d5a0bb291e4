package actors

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"golang.org/x/time/rate"
)

// ErrTooManyConnections refuses one more socket of a user at its cap.
var ErrTooManyConnections = errors.New("too many connections for this user")

// ErrConnectRate refuses a socket of a user that opens them faster than Options.ConnectRate.
var ErrConnectRate = errors.New("too many new connections for this user")

// users owns what is per user rather than per connection: how many sockets a
// user has open, the one rate limiter all of them share, and which sockets
// belong to which session (so that a logout can close them).
type users struct {
	hub      *Hub
	byUID    map[string]*userState
	sessions map[string]map[*actor.PID]struct{}
	ended    map[string]time.Time // sessions ended lately: a socket that checked one just before it ended is closed on arrival
	endOrder []string
	sweeper  *time.Timer

	// Several nodes (usercounts.go): the others' counts of users with connections.
	others map[string]map[string]int // uid → node → its connections there
	runs   nodeRuns                  // the run of each node its counts are from
	live   []string                  // the live nodes, as last looked at
	left   bool                      // this node is stopping: it tells the others nothing more
}

// Ended sessions are remembered this long (a socket is admitted within
// seconds of its session check), and at most this many.
const (
	endedFor = time.Minute
	maxEnded = 10000
)

type userState struct {
	conns   int
	rooms   map[string]int // the rooms its connections are in, and how many in each
	limiter *rate.Limiter  // shared by the user's connections; nil when the rate limit is off
	opens   *rate.Limiter  // new connections; nil when Options.ConnectRate is off
	share   int            // the nodes the limiter's rate is divided among (1: the whole rate)
	profile atomic.Pointer[profile]
}

// profile is what a user's messages carry; replaced whole, never changed.
type profile struct{ NickName, AvatarURL string }

// admit reserves a connection slot; answered with *admission. The profile
// is the one the connection read at its session check.
type admit struct {
	UID     string
	Profile profile
	Until   time.Time // the asker waits no longer: a later admission would hold a slot nobody frees
}

// errAdmitLate refuses an admission its asker has stopped waiting for.
var errAdmitLate = errors.New("admission came too late: the server is overloaded")

type admission struct {
	limiter *rate.Limiter
	profile *atomic.Pointer[profile] // the user's current profile, shared by its connections
	err     error
}

// profileChanged replaces a user's profile for its next messages; answered
// when done, so that a message sent after the change carries it.
type profileChanged struct {
	UID     string
	Profile profile
}

// profileHeard is a profile change made on another node.
type profileHeard profileChanged

// attach and release bracket a connection's life; release frees its slot.
type attach struct {
	UID, Room, Session string
	PID                *actor.PID
}

type release struct {
	UID, Room, Session string
	PID                *actor.PID
}

// liveRooms asks which rooms a user has connections in; answered with map[string]bool.
type liveRooms struct{ UID string }

// endSession closes every connection of a session.
type endSession struct{ ID string }

// sessionEnded tells a conn actor that its session is over.
type sessionEnded struct{}

// sweepUsers drops idle users whose limiter has refilled.
type sweepUsers struct{}

const sweepEvery = time.Minute

func (u *users) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		u.arm(ctx)
		if u.hub.opts.Nodes != nil {
			u.live = u.hub.opts.Nodes.Live()
		}
	case *admit:
		if !m.Until.IsZero() && time.Now().After(m.Until) { // wall time, as the asker's wait
			ctx.Respond(&admission{err: errAdmitLate})
			break
		}
		ctx.Respond(u.admit(m.UID, m.Profile))
	case *profileChanged:
		u.state(m.UID, m.Profile).profile.Store(&m.Profile)
		ctx.Respond(true)
	case *profileHeard:
		if st := u.byUID[m.UID]; st != nil { // a user with no socket here needs nothing
			st.profile.Store(&m.Profile)
		}
	case *attach:
		if st := u.byUID[m.UID]; st != nil {
			if st.rooms == nil {
				st.rooms = map[string]int{}
			}
			st.rooms[m.Room]++
		}
		if m.Session == "" {
			return
		}
		if _, ended := u.ended[m.Session]; ended {
			ctx.Send(m.PID, sessionEnded{})
			return
		}
		set := u.sessions[m.Session]
		if set == nil {
			set = map[*actor.PID]struct{}{}
			u.sessions[m.Session] = set
		}
		set[m.PID] = struct{}{}
	case *release:
		if set := u.sessions[m.Session]; set != nil {
			delete(set, m.PID)
			if len(set) == 0 {
				delete(u.sessions, m.Session)
			}
		}
		if st := u.byUID[m.UID]; st != nil {
			if st.rooms[m.Room]--; st.rooms[m.Room] <= 0 {
				delete(st.rooms, m.Room)
			}
			st.conns--
			u.tell(m.UID, st.conns)
			if st.conns <= 0 && u.rested(st) {
				delete(u.byUID, m.UID)
			}
		}
	case *liveRooms:
		live := map[string]bool{}
		if st := u.byUID[m.UID]; st != nil {
			for room := range st.rooms {
				live[room] = true
			}
		}
		ctx.Respond(live)
	case *endSession:
		for pid := range u.sessions[m.ID] {
			ctx.Send(pid, sessionEnded{})
		}
		delete(u.sessions, m.ID)
		u.remember(m.ID)
	case sweepUsers:
		u.forget(time.Now())
		for uid, st := range u.byUID {
			if st.conns <= 0 && u.rested(st) {
				delete(u.byUID, uid)
			}
		}
		u.arm(ctx)
	case *actor.Stopped:
		if u.sweeper != nil {
			u.sweeper.Stop()
		}
	default:
		u.clusterMessage(ctx, m)
	}
}

func (u *users) admit(uid string, p profile) *admission {
	st := u.state(uid, p)
	if max := u.hub.opts.MaxConnsPerUser; max > 0 && st.conns+u.elsewhere(uid) >= max {
		return &admission{err: ErrTooManyConnections}
	}
	if st.opens != nil && !st.opens.AllowN(u.hub.now(), 1) {
		return &admission{err: ErrConnectRate}
	}
	st.conns++
	u.tell(uid, st.conns)
	return &admission{limiter: st.limiter, profile: &st.profile}
}

// state is the user's, made with profile p when the user is new here.
func (u *users) state(uid string, p profile) *userState {
	st := u.byUID[uid]
	if st == nil {
		st = &userState{}
		st.profile.Store(&p)
		if r := u.hub.opts.Rate; !r.Off {
			r, st.share = r.Or(defaultRate), u.share(uid)
			st.limiter = rate.NewLimiter(limitOf(r, st.share), burstOf(r, st.share))
		}
		if r := u.hub.opts.ConnectRate; !r.Off {
			r = r.Or(defaultConnectRate)
			st.opens = rate.NewLimiter(limitOf(r, 1), r.Messages)
		}
		u.byUID[uid] = st
	}
	return st
}

// rested: forgetting the user loses nothing, its budget is full again (a user
// cannot refill its budget by closing its sockets and opening new ones).
func (u *users) rested(st *userState) bool {
	full := func(l *rate.Limiter) bool { return l == nil || l.TokensAt(u.hub.now()) >= float64(l.Burst()) }
	return full(st.limiter) && full(st.opens)
}

func (u *users) arm(ctx actor.Context) {
	self, root := ctx.Self(), ctx.ActorSystem().Root
	u.sweeper = time.AfterFunc(sweepEvery, func() { root.Send(self, sweepUsers{}) })
}

func (u *users) remember(session string) {
	if u.ended == nil {
		u.ended = map[string]time.Time{}
	}
	if _, ok := u.ended[session]; !ok {
		u.endOrder = append(u.endOrder, session)
	}
	u.ended[session] = time.Now()
	if len(u.endOrder) > maxEnded {
		u.forget(time.Now())
	}
}

// forget drops ended sessions past endedFor, and the oldest beyond maxEnded.
func (u *users) forget(now time.Time) {
	n := 0
	for n < len(u.endOrder) && (len(u.endOrder)-n > maxEnded || now.Sub(u.ended[u.endOrder[n]]) > endedFor) {
		delete(u.ended, u.endOrder[n])
		n++
	}
	u.endOrder = append(u.endOrder[:0], u.endOrder[n:]...)
}
