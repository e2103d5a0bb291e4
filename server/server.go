// Package server assembles Panda chat room: store, WeChat client, actors, media
// and the HTTP edge, with one start-up and one shutdown path.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"path/filepath"
	"sync"
	"time"

	"github.com/pandachat/pandachat/actors"
	"github.com/pandachat/pandachat/auth"
	"github.com/pandachat/pandachat/cluster"
	"github.com/pandachat/pandachat/internal/guard"
	"github.com/pandachat/pandachat/media"
	"github.com/pandachat/pandachat/persistence"
	"github.com/pandachat/pandachat/transport"
	"github.com/pandachat/pandachat/web"
	"github.com/pandachat/pandachat/wechat"
)

// Config is every setting of the server. The zero value of each field is its default.
type Config struct {
	Addr      string // listen address (default 127.0.0.1:8765)
	DataDir   string // store and media directory (default ./data)
	Store     string // "badger" (default) or "memory" (nothing survives a restart)
	Sync      bool   // fsync every batch before delivery
	WXAppID   string
	WXSecret  string
	WXAPI     string        // WeChat API base URL (default https://api.weixin.qq.com)
	WXTimeout time.Duration // default 5 s
	DevLogin  bool
	// DevLoginRate throttles dev logins per client address (default 10 per
	// minute, in a burst; Off: no limit).
	DevLoginRate actors.Rate
	TLSCert      string
	TLSKey       string
	Rate         actors.Rate
	// MaxConnsPerUser caps each user's open sockets (default 16; negative: no cap).
	MaxConnsPerUser int
	// ConnectRate caps how fast each user opens sockets (default 20/20s; Off: none).
	ConnectRate  actors.Rate
	Outbox       int
	SessionTTL   time.Duration
	ReadLimit    int
	MaxContent   int
	UploadLimit  int64
	PublicURL    string
	TrustProxy   bool
	AllowedHosts []string
	ReplayLimit  int
	Retention    int
	HistoryLimit int
	IdleRoom     time.Duration
	FlushWindow  time.Duration // 0: default 20 ms; negative: flush at once
	RecallWindow time.Duration // how long a sender may recall a message (default 2 min)
	PingInterval time.Duration
	IdleTimeout  time.Duration
	WriteTimeout time.Duration
	Grace        time.Duration // shutdown grace period (default 10 s)
	DebugAddr    string        // pprof listener, off when empty
	MetricsAddr  string        // when set, /metrics is served there and not on Addr
	Logger       *slog.Logger

	// Upload limits that protect the disk (see media.Service).
	UploadQuota media.Quota // bytes per user per rolling window (default 200MiB/24h; Off: none)
	MinFreeDisk int64       // uploads get 507 below this much free space on the media disk (default 1GiB; negative: none)

	// Observers for metrics; nil means none.
	ActorObserver actors.Observer
	EdgeObserver  transport.Observer
	Metrics       http.Handler
	OnUpload      func(size int64) // told of each accepted upload

	// Cluster mode, on when ClusterPeers is set: this node's name (default the
	// host name), host:port of its links to the other nodes, every node's
	// link address, and how many copies the cluster keeps of each message and
	// record (default 3, or the number of nodes when fewer). The store is
	// then the replicated one under <DataDir>/cluster instead of Badger.
	NodeName        string
	ClusterListen   string
	ClusterPeers    []string
	ClusterReplicas int
	// ClusterSecret, when set, is what the nodes present to each other on
	// the links between them (the same on every node; never logged).
	ClusterSecret string
	// ClusterStartTimeout bounds the wait for a quorum of the nodes at start
	// (default 1 minute).
	ClusterStartTimeout time.Duration

	// WrapStore, when set, wraps the opened store and the server uses what it
	// returns. It is for fault-injection tests (internal/faultstore), which run
	// the real server over a real store that fails on command.
	WrapStore func(persistence.Store) persistence.Store
}

// Server is a running Panda chat room.
type Server struct {
	cfg   Config
	store persistence.Store
	node  *cluster.Node // cluster mode only
	hub   *actors.Hub
	edge  *transport.Server
	http  *http.Server
	debug *http.Server
	mtx   *http.Server // the metrics listener, when MetricsAddr is set
	mAddr string       // where /metrics listens, when MetricsAddr is set
	ln    net.Listener
	log   *slog.Logger

	once    sync.Once
	shutErr error
}

// New opens the store and builds the server; nothing listens yet.
func New(cfg Config) (*Server, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:8765"
	}
	if cfg.DataDir == "" {
		cfg.DataDir = "data"
	}
	if cfg.Grace <= 0 {
		cfg.Grace = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	if (cfg.WXAppID == "") != (cfg.WXSecret == "") {
		return nil, errors.New("--wx-appid and --wx-secret go together")
	}
	if cfg.MetricsAddr != "" && cfg.Metrics == nil {
		return nil, errors.New("--metrics-addr is set but metrics are off (--metrics=false)")
	}
	log := cfg.Logger
	multi, err := clusterMode(cfg)
	if err != nil {
		return nil, err
	}
	var (
		store persistence.Store
		node  *cluster.Node
		blobs media.Blobs // cluster mode: media bytes every node serves
	)
	switch {
	case multi:
		if node, store, blobs, err = openCluster(cfg, log); err != nil {
			return nil, err
		}
	case cfg.Store == "" || cfg.Store == "badger":
		b, err := persistence.OpenBadger(filepath.Join(cfg.DataDir, "store"), persistence.Options{SyncWrites: cfg.Sync, Logger: log})
		if err != nil {
			return nil, err
		}
		store = b
	case cfg.Store == "memory":
		store = persistence.NewMemory()
	default:
		return nil, fmt.Errorf("--store %q: want badger or memory", cfg.Store)
	}
	if cfg.WrapStore != nil {
		store = cfg.WrapStore(store)
	}

	s := &Server{cfg: cfg, store: store, node: node, log: log}
	var wx *wechat.Client
	if cfg.WXAppID != "" {
		wx = &wechat.Client{BaseURL: cfg.WXAPI, AppID: cfg.WXAppID, Secret: cfg.WXSecret, Timeout: cfg.WXTimeout}
	}
	var nodes actors.Nodes
	if node != nil { // a nil *cluster.Node would be a non-nil interface
		nodes = node
	}
	s.hub = actors.NewHub(actors.Options{
		Store:           store,
		IdleRoom:        cfg.IdleRoom,
		ReplayLimit:     cfg.ReplayLimit,
		Retention:       cfg.Retention,
		MaxContent:      cfg.MaxContent,
		Rate:            cfg.Rate,
		MaxConnsPerUser: cfg.MaxConnsPerUser,
		ConnectRate:     cfg.ConnectRate,
		PingInterval:    cfg.PingInterval,
		FlushWindow:     cfg.FlushWindow,
		RecallWindow:    cfg.RecallWindow,
		Observer:        cfg.ActorObserver,
		Logger:          log,
		Nodes:           nodes,
	})
	m := &media.Service{
		Dir:          filepath.Join(cfg.DataDir, "media"),
		Meta:         store,
		MaxBytes:     cfg.UploadLimit,
		PublicURL:    cfg.PublicURL,
		TrustProxy:   cfg.TrustProxy,
		AllowedHosts: cfg.AllowedHosts,
		OnUpload:     cfg.OnUpload,
		Quota:        cfg.UploadQuota,
		MinFreeDisk:  cfg.MinFreeDisk,
	}
	if blobs != nil { // their bytes are JetStream's, under <data>/cluster
		m.Blobs, m.BlobsDir = blobs, filepath.Join(cfg.DataDir, "cluster")
	}
	if err := m.Open(); err != nil {
		s.hub.Shutdown(time.Second)
		store.Close()
		if node != nil {
			node.Close()
		}
		return nil, fmt.Errorf("media directory: %w", err)
	}
	public := cfg.Metrics
	if cfg.MetricsAddr != "" {
		public = nil // served only on its own listener
	}
	s.edge = transport.New(transport.Options{
		Hub:          s.hub,
		Auth:         &auth.Service{Store: store, WeChat: wx, TTL: cfg.SessionTTL},
		Store:        store,
		Media:        m,
		DevLogin:     cfg.DevLogin,
		DevLoginRate: cfg.DevLoginRate,
		TrustProxy:   cfg.TrustProxy,
		Web:          web.Handler(),
		Metrics:      public,
		Observer:     cfg.EdgeObserver,
		ReadLimit:    cfg.ReadLimit,
		Outbox:       cfg.Outbox,
		WriteTimeout: cfg.WriteTimeout,
		IdleTimeout:  cfg.IdleTimeout,
		HistoryLimit: cfg.HistoryLimit,
		Logger:       log,
	})
	m.Authenticate = s.edge.UserID
	var handler http.Handler = s.edge
	if node != nil {
		handler = clusterHandler(node, s.edge)
	}
	s.http = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute, // a trickled body cannot hold a connection for ever; upgraded sockets clear it
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// Listen binds the address; Addr then tells where.
func (s *Server) Listen() error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.Addr, err)
	}
	s.ln = ln
	shared := s.cfg.MetricsAddr != "" && s.cfg.MetricsAddr == s.cfg.DebugAddr
	if s.cfg.DebugAddr != "" {
		dl, err := net.Listen("tcp", s.cfg.DebugAddr)
		if err != nil {
			ln.Close()
			return fmt.Errorf("debug listener on %s: %w", s.cfg.DebugAddr, err)
		}
		mux := debugMux()
		if shared {
			mux.Handle("GET /metrics", s.cfg.Metrics)
		}
		s.debug = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			defer guard.Recover(s.log, "debug listener", nil)
			_ = s.debug.Serve(dl)
		}()
		if shared {
			s.mAddr = dl.Addr().String()
		}
	}
	if s.cfg.MetricsAddr != "" && !shared {
		ml, err := net.Listen("tcp", s.cfg.MetricsAddr)
		if err != nil {
			ln.Close()
			if s.debug != nil {
				s.debug.Close()
			}
			return fmt.Errorf("metrics listener on %s: %w", s.cfg.MetricsAddr, err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", s.cfg.Metrics)
		s.mtx = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		s.mAddr = ml.Addr().String()
		go func() {
			defer guard.Recover(s.log, "metrics listener", nil)
			_ = s.mtx.Serve(ml)
		}()
	}
	return nil
}

// MetricsURL is where /metrics is served: the metrics listener's, or the
// public URL's when there is none.
func (s *Server) MetricsURL() string {
	if s.mAddr != "" {
		return "http://" + s.mAddr + "/metrics"
	}
	return s.URL() + "/metrics"
}

// debugMux serves pprof on its own listener, never on the public one.
func debugMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// URL is the base URL clients use.
func (s *Server) URL() string {
	scheme := "http"
	if s.cfg.TLSCert != "" {
		scheme = "https"
	}
	return scheme + "://" + s.ln.Addr().String()
}

// Serve answers requests until Shutdown; it returns nil after a clean shutdown.
func (s *Server) Serve() error {
	var err error
	if s.cfg.TLSCert != "" {
		err = s.http.ServeTLS(s.ln, s.cfg.TLSCert, s.cfg.TLSKey)
	} else {
		err = s.http.Serve(s.ln)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting, stores what is pending, closes every socket with
// 1001, and closes the store — within the grace period.
func (s *Server) Shutdown(ctx context.Context) error {
	s.once.Do(func() { s.shutErr = s.shutdown(ctx) })
	return s.shutErr
}

func (s *Server) shutdown(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Grace)
	defer cancel()
	var errs []error
	if s.node != nil {
		// Off the live list and the readiness checks, leaderships handed
		// over; the store goes on through the new leaders while rooms flush.
		s.node.Leave(min(s.cfg.Grace/2, 2*time.Second))
		// Every node sees this one leave within a poll of the live set; its rooms
		// move, and posts on their way here are forwarded to the new owners.
		time.Sleep(actors.HandoverWait)
	}
	go func() { // stops the listener at once, then waits for HTTP requests
		defer guard.Recover(s.log, "http shutdown", nil)
		_ = s.http.Shutdown(ctx)
	}()
	if err := s.edge.Drain(ctx, func() error { return s.hub.Shutdown(s.cfg.Grace) }); err != nil {
		errs = append(errs, err)
	}
	_ = s.http.Shutdown(ctx)
	if s.debug != nil {
		_ = s.debug.Close()
	}
	if s.mtx != nil {
		_ = s.mtx.Close()
	}
	if err := s.store.Sync(); err != nil {
		errs = append(errs, fmt.Errorf("sync store: %w", err))
	}
	if err := s.store.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close store: %w", err))
	}
	if s.node != nil {
		if err := s.node.Close(); err != nil {
			errs = append(errs, fmt.Errorf("leave cluster: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Store exposes the store (backup, tests).
func (s *Server) Store() persistence.Store { return s.store }

// Node is this server's cluster node, nil without cluster mode.
func (s *Server) Node() *cluster.Node { return s.node }

// Edge exposes the HTTP handler (tests).
func (s *Server) Edge() *transport.Server { return s.edge }
