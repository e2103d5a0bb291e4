// Package actors runs the chat on protoactor-go: one actor per connection, one
// per room, and a registry that finds rooms by name.
//
// The path of a message: socket → conn actor (validate, rate-limit) → room actor
// (assign id, store the batch) → fan-out into each member's Sink → socket.
package actors

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/pandachat/pandachat/persistence"
	"github.com/pandachat/pandachat/protocol"
)

var errNoMedia = errors.New("image messages are not enabled")

// Rate is a per-user message rate limit, shared by all of the user's
// connections; the zero value means 20 per 10 s.
type Rate struct {
	Messages int
	Per      time.Duration
	Off      bool
}

// ParseRate reads "20/10s", "5/1s" or "off".
func ParseRate(s string) (Rate, error) {
	if strings.EqualFold(s, "off") {
		return Rate{Off: true}, nil
	}
	n, per, ok := strings.Cut(s, "/")
	msgs, err := strconv.Atoi(n)
	if !ok || err != nil || msgs <= 0 {
		return Rate{}, fmt.Errorf("rate %q: want MESSAGES/DURATION like 20/10s, or off", s)
	}
	d, err := time.ParseDuration(per)
	if err != nil || d <= 0 {
		return Rate{}, fmt.Errorf("rate %q: want MESSAGES/DURATION like 20/10s, or off", s)
	}
	return Rate{Messages: msgs, Per: d}, nil
}

func (r Rate) String() string {
	if r.Off {
		return "off"
	}
	r = r.Or(defaultRate)
	return fmt.Sprintf("%d/%s", r.Messages, r.Per)
}

// Or is r, or def when r sets no rate (a zero count or period).
func (r Rate) Or(def Rate) Rate {
	if r.Messages <= 0 || r.Per <= 0 {
		return def
	}
	return r
}

// The hub's rates when Options leaves them zero: messages, and new
// connections (bursts of 20, then one a second).
var (
	defaultRate        = Rate{Messages: 20, Per: 10 * time.Second}
	defaultConnectRate = Rate{Messages: 20, Per: 20 * time.Second}
)

// Options configure the hub. Zero values are sensible defaults.
type Options struct {
	Store        persistence.Store // required
	IdleRoom     time.Duration     // an empty room stops after this (default 30 s)
	ReplayLimit  int               // most messages replayed on a reconnect with since (default 1000)
	TailSize     int               // newest messages kept in memory per room for replay (default 1024)
	Retention    int               // messages kept per room (default 10 000; negative keeps all)
	MaxContent   int               // characters per text message (default 2000)
	PingInterval time.Duration     // rooms ping their members this often (default 30 s)
	// FlushWindow caps the time between two batches of a busy room (default 20 ms;
	// negative: flush at once). A quiet room's message goes out at once; a busy
	// room's wait at most 15 µs per member, up to this, and share one write per member.
	FlushWindow time.Duration
	Rate        Rate
	// RecallWindow is how long after sending a message its sender may recall it (default 2 min).
	RecallWindow time.Duration
	// MaxConnsPerUser caps a user's open connections (default 16; negative: no cap).
	MaxConnsPerUser int
	// ConnectRate caps how fast a user opens connections (default 20/20s:
	// bursts of 20, then one a second): each join and leave is a presence
	// frame to the room, and a replay with since is read for each.
	ConnectRate Rate
	// MaxInflight bounds the frames one connection has read and not yet had
	// handled (default 256); the read loop then waits and TCP pushes back.
	MaxInflight int
	Observer    Observer
	Logger      *slog.Logger
	// Nodes shares the rooms with the other nodes of a cluster (nil: one node).
	Nodes Nodes
	Now   func() time.Time
}

// DefaultRecallWindow is how long a message can be recalled unless configured.
const DefaultRecallWindow = 2 * time.Minute

// Flooding is refused frames that keep coming for floodAfter with no pause of
// floodPause between them; a single burst, however large, is not a flood.
const (
	floodAfter = 5 * time.Second
	floodPause = time.Second
)

// Hub owns the actor system, the room registry and the store handle.
type Hub struct {
	system   *actor.ActorSystem
	registry *actor.PID
	users    *actor.PID
	store    persistence.Store
	opts     Options
	obs      Observer
	log      *slog.Logger
	workers  *workers      // the dispatcher of every actor of the hub
	stop     chan struct{} // closed by Shutdown: ends the cluster watch
	epoch    int64         // this run of the node (several nodes): counts of an earlier run are stale
}

// NewHub starts the actor system and the room registry.
func NewHub(o Options) *Hub {
	if o.IdleRoom <= 0 {
		o.IdleRoom = 30 * time.Second
	}
	if o.ReplayLimit <= 0 {
		o.ReplayLimit = 1000
	}
	if o.TailSize == 0 {
		o.TailSize = 1024
	}
	if o.Retention == 0 {
		o.Retention = 10000
	}
	if o.FlushWindow == 0 {
		o.FlushWindow = 20 * time.Millisecond
	}
	if o.PingInterval <= 0 {
		o.PingInterval = 30 * time.Second
	}
	if o.MaxContent <= 0 {
		o.MaxContent = protocol.DefaultMaxContent
	}
	if o.MaxConnsPerUser == 0 {
		o.MaxConnsPerUser = 16
	}
	if o.MaxInflight <= 0 {
		o.MaxInflight = 256
	}
	if o.RecallWindow <= 0 {
		o.RecallWindow = DefaultRecallWindow
	}
	if o.Observer == nil {
		o.Observer = NopObserver{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	stop := make(chan struct{})
	h := &Hub{store: o.Store, opts: o, obs: o.Observer, log: o.Logger, stop: stop, epoch: time.Now().UnixNano(),
		workers: newWorkers(maxIdleWorkers, stop)}
	libLog := slog.New(minLevel{o.Logger.Handler(), slog.LevelWarn}).With("lib", "protoactor")
	h.system = actor.NewActorSystem(
		actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return libLog }),
		actor.WithDeadLetterRequestLogging(false),
	)
	// The registry's strategy decides what happens to a room that panics: stop
	// it (its members are closed with 1011 and reconnect) rather than restart
	// it with empty state.
	props := actor.PropsFromProducer(func() actor.Actor {
		return &registry{hub: h, rooms: map[string]*roomRef{}, names: map[string]string{}}
	}, actor.WithSupervisor(stopOnPanic(h)), actor.WithDispatcher(h.workers))
	pid, err := h.system.Root.SpawnNamed(props, "rooms")
	if err != nil { // a fresh system has no actor of that name
		panic(err)
	}
	h.registry = pid
	users := actor.PropsFromProducer(func() actor.Actor {
		return &users{hub: h, byUID: map[string]*userState{}, sessions: map[string]map[*actor.PID]struct{}{}}
	}, actor.WithSupervisor(stopOnPanic(h)), actor.WithDispatcher(h.workers))
	if h.users, err = h.system.Root.SpawnNamed(users, "users"); err != nil {
		panic(err)
	}
	if o.Nodes != nil {
		if err := h.startRelay(h.stop); err != nil { // only when the connection is closed already
			h.log.Error("cluster: this node takes no forwarded posts", "err", err)
		}
	}
	return h
}

func (h *Hub) now() time.Time { return h.opts.Now() }

// ConnSpec describes an authenticated connection joining a room.
type ConnSpec struct {
	UID       string
	SessionID string    // the login behind the socket: its logout or expiry closes it
	Expires   time.Time // when that session ends (zero: never)
	NickName  string    // profile at connect time; later changes come through ProfileChanged
	AvatarURL string
	Room      string
	Since     uint64
	HasSince  bool
	Presence  bool
	V2        bool // the connection asked for protocol version 2 (v=2)
	Sink      Sink
	Base      string // scheme://host of this server as the client sees it
	// Resolve checks a gallery url and returns its absolute form; nil refuses images.
	Resolve func(raw string) (string, error)
}

// Conn is the transport's handle on a connection's actor.
type Conn struct {
	pid   *actor.PID
	root  *actor.RootContext
	actor *conn
}

// admitWait is how long Connect waits for the users actor's answer.
const admitWait = 5 * time.Second

// Connect admits the connection (ErrTooManyConnections at the user's cap) and
// spawns its actor, which joins the room.
func (h *Hub) Connect(spec ConnSpec) (*Conn, error) {
	res, err := h.system.Root.RequestFuture(h.users, &admit{UID: spec.UID, Profile: profile{spec.NickName, spec.AvatarURL}, Until: time.Now().Add(admitWait - time.Second)}, admitWait).Result()
	if err != nil {
		return nil, fmt.Errorf("admission: %w", err)
	}
	adm := res.(*admission)
	if adm.err != nil {
		return nil, adm.err
	}
	c := &conn{hub: h, spec: spec, limiter: adm.limiter, profile: adm.profile}
	c.member = &Member{UID: spec.UID, NickName: spec.NickName, Sink: spec.Sink, Presence: spec.Presence, V2: spec.V2, Base: spec.Base,
		gate: newGate(h.opts.MaxInflight)}
	// A lock-free list mailbox: a connection gets few messages, and an idle one
	// then costs a few words instead of a ring buffer.
	props := actor.PropsFromProducer(func() actor.Actor { return c }, actor.WithMailbox(actor.UnboundedLockfree()), actor.WithDispatcher(h.workers))
	pid := h.system.Root.SpawnPrefix(props, "conn-")
	return &Conn{pid: pid, root: h.system.Root, actor: c}, nil
}

// Receive hands a client frame to the actor; data is copied. While the
// connection has MaxInflight frames in flight it waits: the caller is the
// socket's read loop, so the sender is slowed down, never closed.
func (c *Conn) Receive(data []byte, binary bool) {
	if !c.actor.member.gate.acquire() {
		return // the connection is closing
	}
	c.root.Send(c.pid, &inbound{Data: append([]byte(nil), data...), Binary: binary})
}

// Closed tells the actor its socket is gone; the room learns it from the actor.
func (c *Conn) Closed() {
	c.actor.member.gone.Store(true) // before the room hears of it: nothing it sends now is read
	c.actor.member.gate.close()
	c.root.Stop(c.pid)
}

// InFlight is how many of the connection's frames are not yet handled (tests).
func (c *Conn) InFlight() int { return c.actor.member.gate.inFlight() }

// ProfileChanged gives a user's connections its new profile (nickname and
// avatar as stored: this server's media as a path) for their next messages.
// It returns when they have it.
func (h *Hub) ProfileChanged(uid, nickName, avatarURL string) {
	_, _ = h.system.Root.RequestFuture(h.users, &profileChanged{UID: uid, Profile: profile{nickName, avatarURL}}, 5*time.Second).Result()
	h.publishProfile(uid, profile{nickName, avatarURL}) // the user's sockets on the other nodes, moments later
}

// LiveRooms reports the rooms in which the user has a connection open now: the
// server delivers everything stored there to it.
func (h *Hub) LiveRooms(uid string) (map[string]bool, error) {
	res, err := h.system.Root.RequestFuture(h.users, &liveRooms{UID: uid}, 5*time.Second).Result()
	if err != nil {
		return nil, fmt.Errorf("live rooms: %w", err)
	}
	return res.(map[string]bool), nil
}

// EndSession closes every open socket of a session (logout): each gets the
// invalid-session error frame and close 1008, behind what is already queued.
func (h *Hub) EndSession(sessionID string) {
	h.system.Root.Send(h.users, &endSession{ID: sessionID})
	h.publishLogout(sessionID) // its sockets on the other nodes too
}

// Rooms reports how many rooms are running.
func (h *Hub) Rooms() int {
	res, err := h.system.Root.RequestFuture(h.registry, &roomStats{}, 5*time.Second).Result()
	if err != nil {
		return -1
	}
	return res.(*RoomStats).Rooms
}

// Shutdown closes every room: pending messages are stored, members get 1001.
// It returns when all rooms have stopped or after timeout.
func (h *Hub) Shutdown(timeout time.Duration) error {
	_, err := h.system.Root.RequestFuture(h.registry, &shutdown{}, timeout).Result()
	if h.opts.Nodes != nil { // the others stop counting this node's connections
		_, _ = h.system.Root.RequestFuture(h.users, leaving{}, time.Second).Result()
	}
	select {
	case <-h.stop:
	default:
		close(h.stop)
	}
	h.system.Shutdown()
	if err != nil {
		return fmt.Errorf("rooms did not close in %s: %w", timeout, err)
	}
	return nil
}
