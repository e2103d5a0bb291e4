// Package transport is the HTTP and WebSocket edge: routes, the gws upgrader,
// session parameters, and each connection's outbound queue.
package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"

	"github.com/pandachat/pandachat/actors"
	"github.com/pandachat/pandachat/auth"
	"github.com/pandachat/pandachat/media"
	"github.com/pandachat/pandachat/persistence"
)

// Observer is told about connections and logins, for metrics.
type Observer interface {
	ConnOpened()
	ConnClosed()
	Login(kind, result string) // kind: code|dev|check; result: ok|refused|unavailable|bad_request|throttled|busy
}

type nopObserver struct{}

func (nopObserver) ConnOpened()          {}
func (nopObserver) ConnClosed()          {}
func (nopObserver) Login(string, string) {}

// Options configure the edge. Zero values are sensible defaults.
type Options struct {
	Hub      *actors.Hub       // required
	Auth     *auth.Service     // required
	Store    persistence.Store // required (profiles, history)
	Media    *media.Service    // uploads and media; nil disables images
	DevLogin bool              // POST /login/dev
	// DevLoginRate throttles dev logins per client address (default 10 per
	// minute, in a burst; Off: no limit).
	DevLoginRate actors.Rate
	// TrustProxy takes the client address from X-Real-IP (set it only behind a proxy).
	TrustProxy bool
	Web        http.Handler // the browser client at /
	Metrics    http.Handler // GET /metrics
	Observer   Observer

	ReadLimit    int           // bytes per frame (default 64 KiB; above → close 1009)
	Outbox       int           // queued writes per connection (default 1024)
	OutboxBytes  int           // queued bytes per connection (default 8 MiB)
	WriteTimeout time.Duration // a stuck peer is dropped after this (default 10 s)
	IdleTimeout  time.Duration // no traffic for this long → closed (default 75 s); rooms send the pings
	HistoryLimit int           // largest /history page (default 100)
	Logger       *slog.Logger
}

// readBufferSize is the read buffer each connection keeps (gws reads frames
// through it): chat frames are small, and a frame bigger than it is read
// straight into its message, past the buffer.
const readBufferSize = 512

// Server serves the chat over HTTP and WebSocket.
type Server struct {
	opts     Options
	log      *slog.Logger
	upgrader *gws.Upgrader
	mux      *http.ServeMux
	conns    sync.WaitGroup // open sockets, for draining
	admit    sync.Mutex     // orders conns.Add against the start of Drain
	open     atomic.Int64
	draining atomic.Bool
	base     atomic.Pointer[string] // the last socket's base URL, shared by the next ones with the same

	devLogins  *throttle     // nil: dev logins are not throttled
	codeLogins chan struct{} // WeChat code exchanges in flight, at most maxCodeLogins
}

// maxCodeLogins bounds the WeChat calls in flight: a flood of made-up codes
// costs the server a goroutine and an outbound connection each for up to
// --wx-timeout, and WeChat's own limits count against the app.
const maxCodeLogins = 64

// New builds the server's routes.
func New(o Options) *Server {
	if o.ReadLimit <= 0 {
		o.ReadLimit = 64 << 10
	}
	if o.Outbox <= 0 {
		o.Outbox = 1024
	}
	if o.OutboxBytes <= 0 {
		o.OutboxBytes = 8 << 20
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 75 * time.Second
	}
	if o.HistoryLimit <= 0 {
		o.HistoryLimit = 100
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: o, log: o.Logger, mux: http.NewServeMux(), codeLogins: make(chan struct{}, maxCodeLogins)}
	if r := o.DevLoginRate; o.DevLogin && !r.Off {
		r = r.Or(actors.Rate{Messages: 10, Per: time.Minute})
		s.devLogins = newThrottle(r.Messages, r.Per, maxThrottled)
	}
	s.upgrader = gws.NewUpgrader(events{s}, &gws.ServerOption{
		ReadMaxPayloadSize: o.ReadLimit,
		ReadBufferSize:     readBufferSize,
		CheckUtf8Enabled:   true,
		Recovery:           gws.Recovery,
		Logger:             gwsLogger{o.Logger},
		NewSession:         func() gws.SessionStorage { return &oneSlot{} },
	})
	s.routes()
	return s
}

func (s *Server) routes() {
	s.mux.HandleFunc("/login", s.handleLogin)
	s.mux.HandleFunc("/login/dev", s.handleDevLogin)
	s.mux.HandleFunc("GET /ws", s.handleWS)
	s.mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, map[string]any{"ok": true}) })
	s.mux.HandleFunc("/readyz", s.handleReady)
	s.mux.HandleFunc("/logout", postOnly(s.handleLogout))
	s.mux.HandleFunc("/ws-ticket", postOnly(s.handleTicket))
	s.mux.HandleFunc("GET /me", s.handleMe)
	s.mux.HandleFunc("POST /profile", s.handleProfile)
	s.mux.HandleFunc("GET /history", s.handleHistory)
	s.mux.HandleFunc("GET /rooms", s.handleRooms)
	s.mux.HandleFunc("/read", postOnly(s.handleRead))
	if m := s.opts.Media; m != nil {
		s.mux.HandleFunc("/upload", s.checkedUpload(m.ServeUpload))
		s.mux.HandleFunc("/media/", m.ServeMedia)
	}
	if s.opts.Metrics != nil {
		s.mux.Handle("GET /metrics", s.opts.Metrics)
	}
	if s.opts.Web != nil {
		s.mux.Handle("/", s.opts.Web)
	}
}

// ServeHTTP makes Server an http.Handler. Answers other than a WebSocket
// upgrade (whose socket keeps deadlines of its own) get the write timeout.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Upgrade") == "" {
		w = &deadlineWriter{ResponseWriter: w, rc: http.NewResponseController(w), d: s.opts.WriteTimeout}
	}
	s.mux.ServeHTTP(w, r)
}

// Open is the number of open WebSocket connections.
func (s *Server) Open() int64 { return s.open.Load() }

// Drain refuses new sockets, runs closeAll (the hub's shutdown, which sends
// every socket 1001), and waits until every open socket has closed or ctx ends.
func (s *Server) Drain(ctx context.Context, closeAll func() error) error {
	s.admit.Lock()
	s.draining.Store(true) // from here no socket is added to conns
	s.admit.Unlock()
	err := closeAll()
	done := make(chan struct{})
	go func() { s.conns.Wait(); close(done) }()
	select {
	case <-done:
		return err
	case <-ctx.Done():
		return errors.Join(err, fmt.Errorf("%d connections still open: %w", s.open.Load(), ctx.Err()))
	}
}

// Draining reports whether shutdown has begun.
func (s *Server) Draining() bool { return s.draining.Load() }

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ready": false, "reason": "draining"})
		return
	}
	if _, err := s.opts.Store.LastID("lobby"); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ready": false, "reason": "store: " + err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ready": true, "connections": s.open.Load()})
}

type gwsLogger struct{ l *slog.Logger }

func (g gwsLogger) Error(v ...any) { g.l.Error("websocket", "detail", v) }
