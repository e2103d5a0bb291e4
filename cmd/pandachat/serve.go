package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/pandachat/pandachat/actors"
	"github.com/pandachat/pandachat/internal/guard"
	"github.com/pandachat/pandachat/media"
	"github.com/pandachat/pandachat/server"
)

// serveFlags binds every server setting to a flag; envOf names each flag's
// environment variable. Priority: flag > environment > default.
func serveFlags(cfg *server.Config, out io.Writer) (*flag.FlagSet, map[string]string, *serveExtras) {
	fs := flag.NewFlagSet("pandachat serve", flag.ContinueOnError)
	fs.SetOutput(out)
	x := &serveExtras{}
	env := map[string]string{}
	str := func(p *string, name, envName, def, help string) {
		fs.StringVar(p, name, def, help)
		if envName != "" {
			env[name] = envName
		}
	}
	dur := func(p *time.Duration, name, envName string, def time.Duration, help string) {
		fs.DurationVar(p, name, def, help)
		env[name] = envName
	}
	num := func(p *int, name, envName string, def int, help string) {
		fs.IntVar(p, name, def, help)
		env[name] = envName
	}
	str(&cfg.Addr, "addr", "PANDA_ADDR", "127.0.0.1:8765", "listen address (host:port; port 0 picks a free one)")
	str(&cfg.DataDir, "data", "PANDA_DATA", "./data", "data directory: the Badger store and uploaded media")
	str(&cfg.Store, "store", "PANDA_STORE", "badger", "store: badger (durable) or memory (nothing survives a restart; for benchmarks)")
	fs.BoolVar(&cfg.Sync, "sync", false, "fsync every message batch before delivery (power-loss durability, slower)")
	env["sync"] = "PANDA_SYNC"
	str(&cfg.NodeName, "node-name", "PANDA_NODE_NAME", "", "cluster mode: this node's name, unique among the nodes (empty: the host name)")
	str(&cfg.ClusterListen, "cluster-listen", "PANDA_CLUSTER_LISTEN", "", "cluster mode: host:port for the links between nodes (keep it on a private network: the links are not encrypted, and without --cluster-secret not authenticated)")
	str(&x.clusterPeers, "cluster-peers", "PANDA_CLUSTER_PEERS", "", "cluster mode, on when set: comma-separated host:port of every node's --cluster-listen (this node may be listed); the store is then replicated over the nodes (kept in cluster/ under --data) instead of Badger")
	str(&cfg.ClusterSecret, "cluster-secret", "PANDA_CLUSTER_SECRET", "", "cluster mode: a shared secret every node presents on the links between nodes, the same on all (never logged; empty: the links are open to anyone who reaches --cluster-listen)")
	num(&cfg.ClusterReplicas, "cluster-replicas", "PANDA_CLUSTER_REPLICAS", 0, "cluster mode: copies kept of every message and record (0: 3, or the number of nodes when fewer)")
	str(&cfg.WXAppID, "wx-appid", "WX_APPID", "", "WeChat mini-program appid (enables WeChat login)")
	str(&cfg.WXSecret, "wx-secret", "WX_SECRET", "", "WeChat mini-program app secret (never logged)")
	str(&cfg.WXAPI, "wx-api", "WX_API", "https://api.weixin.qq.com", "WeChat API base URL")
	dur(&cfg.WXTimeout, "wx-timeout", "WX_TIMEOUT", 5*time.Second, "time limit of a WeChat API call")
	str(&x.devLogin, "dev-login", "PANDA_DEV_LOGIN", "auto", "dev login at POST /login/dev: true, false, or auto (on only when no WeChat appid is set)")
	cfg.DevLoginRate = actors.Rate{Messages: 10, Per: time.Minute}
	fs.Var(rateFlag{&cfg.DevLoginRate}, "dev-login-rate", "dev logins per client address, e.g. 10/1m (bursts up to the count; beyond: HTTP 429), or off")
	env["dev-login-rate"] = "PANDA_DEV_LOGIN_RATE"
	str(&cfg.TLSCert, "tls-cert", "PANDA_TLS_CERT", "", "TLS certificate file (serve https/wss directly)")
	str(&cfg.TLSKey, "tls-key", "PANDA_TLS_KEY", "", "TLS private key file")
	fs.Var(rateFlag{&cfg.Rate}, "rate-limit", "messages per user (all of its connections together), e.g. 20/10s (bursts up to the count), or off")
	env["rate-limit"] = "PANDA_RATE_LIMIT"
	num(&cfg.MaxConnsPerUser, "max-conns-per-user", "PANDA_MAX_CONNS_PER_USER", 16, "open WebSocket connections per user; one more is refused with ERR_TOO_MANY_CONNECTIONS (-1: no cap)")
	cfg.ConnectRate = actors.Rate{Messages: 20, Per: 20 * time.Second}
	fs.Var(rateFlag{&cfg.ConnectRate}, "connect-rate", "new WebSocket connections per user, e.g. 20/20s (bursts up to the count; beyond: ERR_RATE_LIMITED and close 1008), or off")
	env["connect-rate"] = "PANDA_CONNECT_RATE"
	num(&cfg.Outbox, "outbox", "PANDA_OUTBOX", 1024, "queued writes per connection before it is closed as a slow consumer (1013)")
	dur(&cfg.SessionTTL, "session-ttl", "PANDA_SESSION_TTL", 24*time.Hour, "session lifetime")
	num(&cfg.ReadLimit, "max-frame", "PANDA_MAX_FRAME", 64<<10, "largest client frame in bytes (larger: close 1009)")
	num(&cfg.MaxContent, "max-content", "PANDA_MAX_CONTENT", 2000, "characters per text message")
	cfg.UploadLimit = media.DefaultMaxBytes
	fs.Var(sizeFlag{p: &cfg.UploadLimit}, "upload-limit", "largest upload, e.g. 10MiB or 5MB (a plain number is bytes; larger: HTTP 413)")
	env["upload-limit"] = "PANDA_UPLOAD_LIMIT"
	cfg.UploadQuota = media.Quota{Bytes: media.DefaultQuotaBytes, Per: media.DefaultQuotaPer}
	fs.Var(quotaFlag{&cfg.UploadQuota}, "upload-quota", "bytes each user may upload in any window of this length, e.g. 200MiB/24h (beyond: HTTP 429 ERR_QUOTA), or off")
	env["upload-quota"] = "PANDA_UPLOAD_QUOTA"
	cfg.MinFreeDisk = media.DefaultMinFreeDisk
	fs.Var(sizeFlag{p: &cfg.MinFreeDisk, off: true}, "min-free-disk", "uploads pause (HTTP 507; chat goes on) while the data directory's disk has less free space than this, e.g. 1GiB, or off")
	env["min-free-disk"] = "PANDA_MIN_FREE_DISK"
	str(&cfg.PublicURL, "public-url", "PANDA_PUBLIC_URL", "", "base of absolute media URLs, e.g. https://chat.example.com (default: from the request)")
	fs.BoolVar(&cfg.TrustProxy, "trust-proxy", false, "honour X-Forwarded-Proto/-Host from a reverse proxy")
	env["trust-proxy"] = "PANDA_TRUST_PROXY"
	str(&x.allowedHosts, "allowed-image-hosts", "PANDA_ALLOWED_IMAGE_HOSTS", "", "comma-separated extra https hosts gallery messages may link to")
	num(&cfg.ReplayLimit, "replay-limit", "PANDA_REPLAY_LIMIT", 1000, "most messages replayed to a reconnect with since")
	num(&cfg.Retention, "retention", "PANDA_RETENTION", 10000, "messages kept per room (older ones are deleted; -1 keeps all)")
	num(&cfg.HistoryLimit, "history-limit", "PANDA_HISTORY_LIMIT", 100, "largest /history page")
	dur(&cfg.IdleRoom, "room-idle", "PANDA_ROOM_IDLE", 30*time.Second, "an empty room stops after this")
	dur(&cfg.FlushWindow, "flush-window", "PANDA_FLUSH_WINDOW", 20*time.Millisecond, "longest wait of a busy room's batch (15µs per member up to this); its messages then share one write per member (0: flush at once)")
	dur(&cfg.RecallWindow, "recall-window", "PANDA_RECALL_WINDOW", 2*time.Minute, "how long after sending a message its sender may recall it (connections of protocol version 2, v=2)")
	dur(&cfg.PingInterval, "ping-interval", "PANDA_PING_INTERVAL", 30*time.Second, "server ping interval (a new room's first ping at a random point of its second half)")
	dur(&cfg.IdleTimeout, "idle-timeout", "PANDA_IDLE_TIMEOUT", 75*time.Second, "close a connection with no traffic for this long")
	dur(&cfg.WriteTimeout, "write-timeout", "PANDA_WRITE_TIMEOUT", 10*time.Second, "drop a peer that reads nothing for this long")
	dur(&cfg.Grace, "grace", "PANDA_GRACE", 10*time.Second, "shutdown grace period")
	str(&cfg.DebugAddr, "debug-addr", "PANDA_DEBUG_ADDR", "", "serve Go pprof profiles on this separate address, e.g. 127.0.0.1:6060 (off when empty)")
	str(&x.logFormat, "log-format", "PANDA_LOG_FORMAT", "text", "log format: text or json")
	str(&x.logLevel, "log-level", "PANDA_LOG_LEVEL", "info", "log level: debug, info, warn, error")
	fs.BoolVar(&x.metrics, "metrics", true, "serve Prometheus metrics at GET /metrics (keep it off the public side of a proxy, or use --metrics-addr)")
	env["metrics"] = "PANDA_METRICS"
	str(&cfg.MetricsAddr, "metrics-addr", "PANDA_METRICS_ADDR", "", "serve /metrics only on this separate address, e.g. 127.0.0.1:9100, and not on --addr (empty: on --addr)")
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "Usage: pandachat serve [flags]\n\nRuns the chat server. Every flag can also be set by the environment variable shown; a flag wins.\n\nFlags:\n")
		fs.VisitAll(func(f *flag.Flag) {
			def := ""
			if f.DefValue != "" {
				def = fmt.Sprintf(" (default %s)", f.DefValue)
			}
			fmt.Fprintf(out, "  --%s\n    \t%s%s  [$%s]\n", f.Name, f.Usage, def, env[f.Name])
		})
	}
	return fs, env, x
}

type serveExtras struct {
	devLogin, allowedHosts, logFormat, logLevel string
	clusterPeers                                string
	metrics                                     bool
}

// parseServe reads flags and environment into a Config.
// Help goes to out; the server's logger writes to logs.
func parseServe(args []string, lookup func(string) (string, bool), out, logs io.Writer) (server.Config, string, error) {
	var cfg server.Config
	fs, env, x := serveFlags(&cfg, out)
	for name, key := range env {
		if v, ok := lookup(key); ok {
			if err := fs.Set(name, v); err != nil {
				return cfg, "", fmt.Errorf("$%s: %w", key, err)
			}
		}
	}
	fs.SetOutput(io.Discard) // a bad flag is one line from the caller, not the whole usage
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(out)
			fs.Usage()
		}
		return cfg, "", err
	}
	if fs.NArg() > 0 {
		return cfg, "", fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	switch strings.ToLower(x.devLogin) {
	case "auto", "":
		cfg.DevLogin = cfg.WXAppID == ""
	case "true", "1", "on", "yes":
		cfg.DevLogin = true
	case "false", "0", "off", "no":
		cfg.DevLogin = false
	default:
		return cfg, "", fmt.Errorf("--dev-login (or $PANDA_DEV_LOGIN) %q: want true, false or auto", x.devLogin)
	}
	for _, p := range strings.Split(x.clusterPeers, ",") {
		if p = strings.TrimSpace(p); p != "" {
			cfg.ClusterPeers = append(cfg.ClusterPeers, p)
		}
	}
	if x.allowedHosts != "" {
		for _, h := range strings.Split(x.allowedHosts, ",") {
			if h = strings.TrimSpace(h); h != "" {
				cfg.AllowedHosts = append(cfg.AllowedHosts, h)
			}
		}
	}
	if cfg.FlushWindow == 0 {
		cfg.FlushWindow = -1 // "0: flush at once" on the command line
	}
	if cfg.Outbox <= 0 {
		return cfg, "", errors.New("--outbox must be positive")
	}
	if cfg.RecallWindow <= 0 {
		return cfg, "", errors.New("--recall-window must be positive")
	}
	if cfg.Grace <= 0 {
		return cfg, "", errors.New("--grace must be positive: it is how long a shutdown may take to store what is pending")
	}
	if cfg.ReadLimit < 1024 {
		return cfg, "", errors.New("--max-frame must be at least 1024 bytes")
	}
	if cfg.MaxContent <= 0 || cfg.UploadLimit <= 0 || cfg.ReplayLimit <= 0 || cfg.HistoryLimit <= 0 {
		return cfg, "", errors.New("--max-content, --upload-limit, --replay-limit and --history-limit must be positive")
	}
	if cfg.Retention == 0 {
		return cfg, "", errors.New("--retention must be positive, or -1 to keep everything")
	}
	if x.logFormat != "text" && x.logFormat != "json" {
		return cfg, "", fmt.Errorf("--log-format (or $PANDA_LOG_FORMAT) %q: want text or json", x.logFormat)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(x.logLevel)); err != nil {
		return cfg, "", fmt.Errorf("--log-level (or $PANDA_LOG_LEVEL) %q: want debug, info, warn or error", x.logLevel)
	}
	cfg.Logger = newLogger(out, x.logFormat, level)
	if x.metrics {
		withMetrics(&cfg)
	} else if cfg.MetricsAddr != "" {
		return cfg, "", errors.New("--metrics-addr needs --metrics (metrics are off)")
	}
	return cfg, x.logFormat, nil
}

func newLogger(w io.Writer, format string, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// serve runs the server until ctx ends (SIGINT/SIGTERM), then shuts down gracefully.
func serve(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, _, err := parseServe(args, lookupEnv, stdout, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "pandachat serve: %v (see pandachat serve --help)\n", err)
		return 2
	}
	if _, ok := lookupEnv("GOGC"); !ok {
		// Most of the heap is long-lived connection state; a lower GC target keeps
		// RSS near the live heap for little CPU (docs/operations.md, "Sizing").
		debug.SetGCPercent(50)
	}
	srv, err := server.New(cfg)
	if err == nil {
		err = srv.Listen()
	}
	if err != nil {
		fmt.Fprintf(stderr, "pandachat: %v\n", err)
		return 1
	}
	startupLines(stderr, cfg, srv.URL())
	if n := srv.Node(); n != nil {
		fmt.Fprintf(stderr, "pandachat: cluster node %s: %d nodes up of %d known, %d copies of the data under %s\n",
			n.Name(), len(n.Live()), len(n.Peers()), n.Replicas(), filepath.Join(cfg.DataDir, "cluster"))
		if cfg.ClusterSecret == "" {
			fmt.Fprintf(stderr, "pandachat: WARNING: the links between nodes are not authenticated (no --cluster-secret): anyone who reaches %s can join and read the store\n", cfg.ClusterListen)
		}
	}
	adm := startAdmin(srv, cfg)
	done := make(chan error, 1)
	go func() {
		defer guard.Recover(cfg.Logger, "public listener", func(p any) { done <- fmt.Errorf("listener panicked: %v", p) })
		done <- srv.Serve()
	}()
	select {
	case err = <-done:
		cfg.Logger.Error("server stopped", "err", err)
		adm.stop(cfg.Grace)
		_ = srv.Shutdown(context.Background())
		return 1
	case <-ctx.Done():
	}
	fmt.Fprintf(stderr, "pandachat: shutting down (grace %s)\n", cfg.Grace)
	adm.stop(cfg.Grace) // a backup in progress finishes before the store closes
	if err := srv.Shutdown(context.Background()); err != nil {
		fmt.Fprintf(stderr, "pandachat: shutdown: %v\n", err)
		return 1
	}
	<-done
	fmt.Fprintln(stderr, "pandachat: stopped cleanly")
	return 0
}

// startupLines tell an operator where the server listens and how people log in.
func startupLines(w io.Writer, cfg server.Config, url string) {
	fmt.Fprintf(w, "pandachat %s: listening on %s\n", version, url)
	store := cfg.Store
	if store == "" {
		store = "badger"
	}
	sync := "off"
	if cfg.Sync {
		sync = "on (fsync per batch)"
	}
	switch {
	case len(cfg.ClusterPeers) > 0: // the cluster line follows
	case store == "memory":
		fmt.Fprintf(w, "pandachat: store: memory — nothing survives a restart\n")
	default:
		fmt.Fprintf(w, "pandachat: data directory %s (badger, sync %s)\n", cfg.DataDir, sync)
	}
	if cfg.WXAppID != "" {
		fmt.Fprintf(w, "pandachat: WeChat login on for appid %s via %s\n", cfg.WXAppID, cfg.WXAPI)
	} else {
		fmt.Fprintf(w, "pandachat: WeChat login off (no --wx-appid)\n")
	}
	if cfg.DevLogin {
		fmt.Fprintf(w, "pandachat: WARNING: dev login is on — anyone can sign in with just a nickname at POST /login/dev\n")
	}
	if cfg.PublicURL == "" && !loopback(cfg.Addr) {
		fmt.Fprintf(w, "pandachat: WARNING: no --public-url: each client gets media URLs built from its own Host header; set it behind a proxy or for mini-programs\n")
	}
	fmt.Fprintf(w, "pandachat: rate limit %s per connection; browser client at %s/\n", cfg.Rate, url)
}

// rateFlag parses --rate-limit as it is set, so a bad environment value names its variable.
type rateFlag struct{ r *actors.Rate }

func (f rateFlag) String() string {
	if f.r == nil {
		return "20/10s"
	}
	return f.r.String()
}

func (f rateFlag) Set(s string) error {
	r, err := actors.ParseRate(s)
	if err != nil {
		return err
	}
	*f.r = r
	return nil
}

// loopback reports whether addr only listens on this machine.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
