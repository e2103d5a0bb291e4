package server_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/pandachat/pandachat/internal/chattest"
	"github.com/pandachat/pandachat/metrics"
	"github.com/pandachat/pandachat/server"
)

// get fetches url and returns status and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func observed(cfg server.Config) server.Config {
	m := metrics.New()
	cfg.ActorObserver, cfg.EdgeObserver, cfg.Metrics, cfg.OnUpload = m, m, m.Handler(), m.Upload
	return cfg
}

// With --metrics-addr, /metrics is served on that listener only; without it,
// on the public address.
func TestMetricsAddr(t *testing.T) {
	t.Run("separate listener", func(t *testing.T) {
		env := chattest.Start(t, observed(server.Config{DevLogin: true, MetricsAddr: "127.0.0.1:0"}))
		env.DevLogin("counted")
		murl := env.Srv.MetricsURL()
		if strings.HasPrefix(murl, env.URL) {
			t.Fatalf("metrics URL %s is on the public address %s", murl, env.URL)
		}
		if code, body := get(t, murl); code != 200 || !strings.Contains(body, `pandachat_logins_total{kind="dev",result="ok"} 1`) {
			t.Fatalf("GET %s: HTTP %d\n%.400s", murl, code, body)
		}
		if code, body := get(t, env.URL+"/metrics"); code == 200 || strings.Contains(body, "pandachat_") {
			t.Fatalf("public /metrics: HTTP %d %.200s, want no metrics there", code, body)
		}
		// The metrics listener serves nothing else.
		if code, _ := get(t, strings.TrimSuffix(murl, "/metrics")+"/me"); code != 404 {
			t.Fatalf("metrics listener /me: HTTP %d, want 404", code)
		}
	})
	t.Run("public address", func(t *testing.T) {
		env := chattest.Start(t, observed(server.Config{DevLogin: true}))
		if murl := env.Srv.MetricsURL(); murl != env.URL+"/metrics" {
			t.Fatalf("metrics URL %s, want %s/metrics", murl, env.URL)
		}
		if code, body := get(t, env.URL+"/metrics"); code != 200 || !strings.Contains(body, "pandachat_connections") {
			t.Fatalf("public /metrics: HTTP %d %.200s", code, body)
		}
	})
	t.Run("shared with the debug listener", func(t *testing.T) {
		env := chattest.Start(t, observed(server.Config{MetricsAddr: "127.0.0.1:0", DebugAddr: "127.0.0.1:0"}))
		murl := env.Srv.MetricsURL()
		if code, _ := get(t, murl); code != 200 {
			t.Fatalf("GET %s: HTTP %d", murl, code)
		}
		if code, _ := get(t, strings.TrimSuffix(murl, "/metrics")+"/debug/pprof/"); code != 200 {
			t.Fatalf("pprof next to metrics: HTTP %d", code)
		}
		if code, _ := get(t, env.URL+"/metrics"); code == 200 {
			t.Fatal("public /metrics answered")
		}
	})
	t.Run("metrics off", func(t *testing.T) {
		if _, err := server.New(server.Config{DataDir: t.TempDir(), MetricsAddr: "127.0.0.1:0"}); err == nil || !strings.Contains(err.Error(), "metrics-addr") {
			t.Fatalf("--metrics-addr without metrics: %v, want an error naming it", err)
		}
	})
}
