package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/pandachat/pandachat/internal/guard"
	"github.com/pandachat/pandachat/metrics"
	"github.com/pandachat/pandachat/persistence"
	"github.com/pandachat/pandachat/server"
)

// Operations commands: healthcheck (for container health checks, which have no
// curl), backup and restore.
//
// Online backups go through the admin socket, <data>/admin.sock: a Unix socket
// that the running server opens with mode 0600, so only the user who owns the
// data (or root) can use it; there is no token to leak and nothing on the
// network. Badger lets one process hold a store, so the server takes the
// backup itself and streams it; "pandachat backup" opens the store directly
// when no server answers on the socket (offline backup).

const (
	adminSocket  = "admin.sock"
	backupStatus = "Pandachat-Backup-Status" // HTTP trailer: "ok" or the error
)

// withMetrics makes cfg observed by a fresh Metrics served at GET /metrics.
func withMetrics(cfg *server.Config) *metrics.Metrics {
	m := metrics.New()
	cfg.ActorObserver, cfg.EdgeObserver, cfg.Metrics, cfg.OnUpload = m, m, m.Handler(), m.Upload
	return m
}

// admin serves the admin socket of a running server.
type admin struct {
	http    *http.Server
	path    string
	backups sync.WaitGroup // running backups: the store must outlive them
}

// startAdmin opens <data>/admin.sock for online backups. It returns nil (and
// logs why) when the store is not Badger or the socket cannot be made.
func startAdmin(srv *server.Server, cfg server.Config) *admin {
	b, ok := srv.Store().(*persistence.Badger)
	if !ok {
		return nil
	}
	path := filepath.Join(cfg.DataDir, adminSocket)
	// A socket left by a killed server is stale: this process holds the store lock now.
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		cfg.Logger.Warn("admin socket off: online backup unavailable", "path", path, "err", err)
		return nil
	}
	old := syscall.Umask(0o177) // the socket is created 0600, with no window where others could connect
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		cfg.Logger.Warn("admin socket off: online backup unavailable", "path", path, "err", err)
		return nil
	}
	a := &admin{path: path}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /backup", func(w http.ResponseWriter, r *http.Request) {
		a.backups.Add(1)
		defer a.backups.Done()
		w.Header().Set("Trailer", backupStatus)
		w.Header().Set("Content-Type", "application/x-tar")
		start := time.Now()
		man, err := persistence.WriteBackup(w, b, filepath.Join(cfg.DataDir, "media"), cfg.DataDir)
		if err != nil {
			cfg.Logger.Error("backup failed", "err", err)
			w.Header().Set(backupStatus, err.Error())
			return
		}
		w.Header().Set(backupStatus, "ok")
		cfg.Logger.Info("backup written", "media", man.Media, "took", time.Since(start).Round(time.Millisecond))
	})
	a.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer guard.Recover(cfg.Logger, "admin socket", nil)
		_ = a.http.Serve(ln)
	}()
	return a
}

// stop lets a running backup finish (within the grace period), then removes the socket.
func (a *admin) stop(grace time.Duration) {
	if a == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := a.http.Shutdown(ctx); err != nil {
		_ = a.http.Close() // past the grace period: cut the backup off; its writes now fail
	}
	a.backups.Wait() // never close the store under a backup that still reads it
	_ = os.Remove(a.path)
}

// dataDirFlag is --data with $PANDA_DATA and the serve default.
func dataDirFlag(fs *flag.FlagSet) *string {
	def := "./data"
	if v, ok := lookupEnv("PANDA_DATA"); ok {
		def = v
	}
	return fs.String("data", def, "data directory of the server [$PANDA_DATA]")
}

func opsFlags(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("pandachat "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: pandachat %s\n\nFlags:\n", usage)
		fs.PrintDefaults()
	}
	return fs
}

// parseOps parses a command's flags; a non-nil code means: exit with it.
func parseOps(fs *flag.FlagSet, args []string, stderr io.Writer) *int {
	code := 0
	if err := fs.Parse(args); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			code = 2
		}
		return &code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		code = 2
		return &code
	}
	return nil
}

// healthcheck GETs /healthz of the local server; it exits 0 when it answers 200.
func healthcheck(ctx context.Context, args []string, stderr io.Writer) int {
	fs := opsFlags("healthcheck", "healthcheck [--url URL]", stderr)
	url := fs.String("url", "", "URL to check (default: /healthz of $PANDA_ADDR on this host, https when $PANDA_TLS_CERT is set)")
	timeout := fs.Duration("timeout", 3*time.Second, "time limit")
	if code := parseOps(fs, args, stderr); code != nil {
		return *code
	}
	if *url == "" {
		*url = localURL() + "/healthz"
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	// The check runs beside the server, which may have a certificate for its
	// public name only: verifying it against 127.0.0.1 would always fail.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
	if err != nil {
		fmt.Fprintf(stderr, "pandachat healthcheck: %v\n", err)
		return 2
	}
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "pandachat healthcheck: %v\n", err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "pandachat healthcheck: %s: HTTP %d\n", *url, resp.StatusCode)
		return 1
	}
	return 0
}

// localURL is the server's base URL as seen from its own host.
func localURL() string {
	addr, ok := lookupEnv("PANDA_ADDR")
	if !ok || addr == "" {
		addr = "127.0.0.1:8765"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		host, port = "127.0.0.1", "8765"
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	scheme := "http"
	if v, _ := lookupEnv("PANDA_TLS_CERT"); v != "" {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// backup writes an archive of the store and media to --out: through the admin
// socket when the server runs, else straight from the stopped server's data.
func backup(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := opsFlags("backup", "backup --out FILE [--data DIR]", stderr)
	data := dataDirFlag(fs)
	out := fs.String("out", "", "archive to write (a tar file); - writes to standard output")
	if code := parseOps(fs, args, stderr); code != nil {
		return *code
	}
	if *out == "" {
		fmt.Fprintln(stderr, "pandachat backup: --out FILE is required")
		return 2
	}
	how, err := writeArchive(*out, stdout, func(w io.Writer) (string, error) {
		how, err := onlineBackup(ctx, *data, w)
		if errors.Is(err, errNoServer) {
			return "offline (no server running)", offlineBackup(*data, w)
		}
		return how, err
	})
	if err != nil {
		fmt.Fprintf(stderr, "pandachat backup: %v\n", err)
		return 1
	}
	if *out != "-" {
		fmt.Fprintf(stderr, "pandachat backup: wrote %s, %s\n", *out, how)
	}
	return 0
}

// writeArchive runs write into out through a temp file renamed on success, so
// a failed backup never leaves a file that looks complete.
func writeArchive(out string, stdout io.Writer, write func(io.Writer) (string, error)) (string, error) {
	if out == "-" {
		return write(stdout)
	}
	f, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".*")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name()) // fails harmlessly after the rename
	how, err := write(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o600)
	}
	if err == nil {
		err = os.Rename(f.Name(), out)
	}
	return how, err
}

var errNoServer = errors.New("no server on the admin socket")

func onlineBackup(ctx context.Context, data string, w io.Writer) (string, error) {
	sock := filepath.Join(data, adminSocket)
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://admin/backup", nil)
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return "", errNoServer
		}
		return "", fmt.Errorf("admin socket %s: %w", sock, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("admin socket %s: HTTP %d", sock, resp.StatusCode)
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return "", fmt.Errorf("reading the backup from the server: %w", err)
	}
	if st := resp.Trailer.Get(backupStatus); st != "ok" {
		if st == "" {
			st = "the server stopped before the end"
		}
		return "", fmt.Errorf("server-side backup failed: %s", st)
	}
	return "online (taken by the running server)", nil
}

func offlineBackup(data string, w io.Writer) error {
	storeDir := filepath.Join(data, "store")
	if _, err := os.Stat(storeDir); err != nil {
		return fmt.Errorf("no store in %s: %w", data, err)
	}
	s, err := persistence.OpenBadger(storeDir, persistence.Options{})
	if err != nil {
		return fmt.Errorf("%w (if a server uses it, its admin socket %s is missing)", err, filepath.Join(data, adminSocket))
	}
	_, err = persistence.WriteBackup(w, s, filepath.Join(data, "media"), data)
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	return err
}

// restore unpacks an archive into a new data directory.
func restore(args []string, stdin io.Reader, stderr io.Writer) int {
	fs := opsFlags("restore", "restore --in FILE --data DIR", stderr)
	in := fs.String("in", "", "archive made by pandachat backup; - reads standard input")
	data := fs.String("data", "", "data directory to create; it must not exist or be empty")
	if code := parseOps(fs, args, stderr); code != nil {
		return *code
	}
	if *in == "" || *data == "" {
		fmt.Fprintln(stderr, "pandachat restore: --in FILE and --data DIR are required")
		return 2
	}
	if err := restoreInto(*in, stdin, *data); err != nil {
		fmt.Fprintf(stderr, "pandachat restore: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "pandachat restore: restored %s into %s\n", *in, *data)
	return 0
}

// restoreInto restores the archive in into the data directory data, which must
// be missing or empty. Nothing appears under data until the restore is
// complete, so a failed or interrupted restore never leaves data that a server
// could start on:
//   - data missing: the restore goes to a hidden directory next to it
//     (.<name>.restore-*), renamed to data at the end;
//   - data an empty directory: it is kept as it is (it may be a mounted volume,
//     or belong to the service's user), the restore goes to a hidden directory
//     inside it, and media/ then store/ are renamed into place at the end.
//
// On failure the hidden directory is removed: data is as it was.
func restoreInto(in string, stdin io.Reader, data string) (err error) {
	ents, err := os.ReadDir(data)
	exists := err == nil
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return err
	case len(ents) > 0:
		return fmt.Errorf("%s is not empty; restore only into a new or empty directory", data)
	}
	r := stdin
	if in != "-" {
		f, err := os.Open(in)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	stage := data
	if !exists {
		stage = filepath.Dir(data)
		if err := os.MkdirAll(stage, 0o750); err != nil {
			return err
		}
	}
	tmp, err := os.MkdirTemp(stage, "."+filepath.Base(data)+".restore-")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	if _, err := persistence.RestoreBackup(r, filepath.Join(tmp, "store"), filepath.Join(tmp, "media")); err != nil {
		return err
	}
	if !exists {
		if err := os.Chmod(tmp, 0o750); err != nil {
			return err
		}
		if err := os.Rename(tmp, data); err != nil {
			return err
		}
		return syncDir(stage)
	}
	// The store comes last: a directory with store/ in it is a whole restore.
	for _, name := range []string{"media", "store"} {
		if err := os.Rename(filepath.Join(tmp, name), filepath.Join(data, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			os.RemoveAll(filepath.Join(data, "media"))
			return err
		}
	}
	if err := os.Remove(tmp); err != nil {
		return err
	}
	return syncDir(data)
}

// syncDir makes the renames in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
