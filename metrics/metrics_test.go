package metrics_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pandachat/pandachat/actors"
	"github.com/pandachat/pandachat/internal/chattest"
	"github.com/pandachat/pandachat/metrics"
	"github.com/pandachat/pandachat/server"
)

// scrape reads the handler's text exposition into series -> value, where a
// series is the metric name with its labels as printed, e.g.
// pandachat_logins_total{kind="dev",result="ok"}.
func scrape(t *testing.T, h http.Handler) map[string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("GET /metrics: HTTP %d", rec.Code)
	}
	return parse(t, rec.Body)
}

func scrapeURL(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: HTTP %d", url, resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q, want the text exposition format", ct)
	}
	return parse(t, resp.Body)
}

func parse(t *testing.T, r io.Reader) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad exposition line %q", line)
		}
		out[line[:i]] = v
	}
	return out
}

func TestObserverCountsWhatItIsTold(t *testing.T) {
	m := metrics.New()
	m.ConnOpened()
	m.ConnOpened()
	m.ConnClosed()
	m.RoomStarted()
	m.RoomStarted()
	m.RoomStopped()
	m.MessageIn()
	m.MessageIn()
	m.Broadcast(2, 10, 3*time.Millisecond)
	m.StoreWrite(time.Millisecond, nil)
	m.StoreWrite(time.Millisecond, errors.New("disk full"))
	m.SlowConsumer()
	m.RateLimited(false)
	m.RateLimited(false)
	m.RateLimited(true)
	m.Login("dev", "ok")
	m.Login("code", "refused")
	m.Upload(1000)
	m.Upload(24)
	m.Event(actors.EventReaction)
	m.Event(actors.EventReaction)
	m.Event(actors.EventTyping)

	got := scrape(t, m.Handler())
	want := map[string]float64{
		"pandachat_connections":                                 1,
		"pandachat_rooms":                                       1,
		"pandachat_messages_in_total":                           2,
		"pandachat_messages_broadcast_total":                    2,
		"pandachat_messages_out_total":                          10,
		"pandachat_fanout_seconds_count":                        1,
		"pandachat_fanout_seconds_sum":                          0.003,
		"pandachat_store_write_seconds_count":                   2,
		"pandachat_store_write_errors_total":                    1,
		"pandachat_slow_consumer_closes_total":                  1,
		`pandachat_rate_limited_total{action="refused"}`:        2,
		`pandachat_rate_limited_total{action="closed"}`:         1,
		`pandachat_logins_total{kind="dev",result="ok"}`:        1,
		`pandachat_logins_total{kind="code",result="refused"}`:  1,
		`pandachat_logins_total{kind="check",result="refused"}`: 0, // present before the first one
		`pandachat_uploads_total`:                               2,
		`pandachat_upload_bytes_total`:                          1024,
		`pandachat_fanout_seconds_bucket{le="+Inf"}`:            1,
		`pandachat_store_write_seconds_bucket{le="0.0008"}`:     0,
		`pandachat_store_write_seconds_bucket{le="0.0016"}`:     2,
		`pandachat_events_total{kind="reaction"}`:               2,
		`pandachat_events_total{kind="typing"}`:                 1,
		`pandachat_events_total{kind="recall"}`:                 0, // present before the first one
	}
	for series, v := range want {
		g, ok := got[series]
		if !ok {
			t.Errorf("%s missing", series)
			continue
		}
		if diff := g - v; diff > 1e-9 || diff < -1e-9 {
			t.Errorf("%s = %v, want %v", series, g, v)
		}
	}
	for _, series := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if _, ok := got[series]; !ok {
			t.Errorf("%s missing: runtime and process collectors not registered", series)
		}
	}
}

func TestRegistriesAreSeparate(t *testing.T) {
	a, b := metrics.New(), metrics.New()
	a.ConnOpened()
	if v := scrape(t, b.Handler())["pandachat_connections"]; v != 0 {
		t.Fatalf("second registry sees the first one's connection: %v", v)
	}
}

// startWithMetrics runs a real server observed by a fresh Metrics.
func startWithMetrics(t *testing.T, cfg server.Config) (*chattest.Env, *metrics.Metrics) {
	m := metrics.New()
	cfg.ActorObserver, cfg.EdgeObserver, cfg.Metrics, cfg.OnUpload = m, m, m.Handler(), m.Upload
	cfg.DevLogin = true
	return chattest.Start(t, cfg), m
}

// eventually scrapes until every series has its value; counters move just after
// the frames they count are queued, so a client may see a frame first.
func eventually(t *testing.T, url string, want map[string]float64) {
	t.Helper()
	deadline := time.Now().Add(chattest.Wait)
	for {
		got := scrapeURL(t, url)
		var wrong []string
		for series, v := range want {
			if got[series] != v {
				wrong = append(wrong, fmt.Sprintf("%s = %v, want %v", series, got[series], v))
			}
		}
		if len(wrong) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics did not reach their values:\n%s", strings.Join(wrong, "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestMetricsThroughARealServer(t *testing.T) {
	env, _ := startWithMetrics(t, server.Config{})
	url := env.URL + "/metrics"
	eventually(t, url, map[string]float64{"pandachat_connections": 0, "pandachat_rooms": 0})

	alice, bob := env.DevLogin("alice"), env.DevLogin("bob")
	a, b := env.Dial(alice, "room=metrics"), env.Dial(bob, "room=metrics")
	a.NextOfType("system")
	b.NextOfType("system")
	for i := range 3 {
		a.Send(map[string]any{"text": true, "content": fmt.Sprintf("hello %d", i)})
	}
	for range 3 {
		a.NextOfType("user")
		b.NextOfType("remote")
	}
	eventually(t, url, map[string]float64{
		"pandachat_connections":                          2,
		"pandachat_rooms":                                1,
		"pandachat_messages_in_total":                    3,
		"pandachat_messages_broadcast_total":             3,
		"pandachat_messages_out_total":                   6,
		`pandachat_logins_total{kind="dev",result="ok"}`: 2,
	})
	got := scrapeURL(t, url)
	if n := got["pandachat_fanout_seconds_count"]; n < 1 || n > 3 {
		t.Errorf("fan-outs = %v, want 1..3 (batches of the 3 messages)", n)
	}
	if n := got["pandachat_store_write_seconds_count"]; n < 1 || n > 3 {
		t.Errorf("store writes = %v, want 1..3", n)
	}
	if n := got["pandachat_store_write_errors_total"]; n != 0 {
		t.Errorf("store write errors = %v", n)
	}

	// An upload counts its bytes.
	img := chattest.PNG(3, 2)
	if code, _ := env.Upload(alice, "x.png", img); code != 200 {
		t.Fatalf("upload: HTTP %d", code)
	}
	// A refused login is counted by result.
	resp, err := http.Post(env.URL+"/login/dev", "application/json", strings.NewReader("not json"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	eventually(t, url, map[string]float64{
		"pandachat_uploads_total":                                 1,
		"pandachat_upload_bytes_total":                            float64(len(img)),
		`pandachat_logins_total{kind="dev",result="bad_request"}`: 1,
	})

	// A closed connection leaves the gauge.
	b.Conn.WriteClose(1000, nil)
	b.Closed()
	eventually(t, url, map[string]float64{"pandachat_connections": 1})
}

func TestRateLimitMetrics(t *testing.T) {
	// One message an hour: the first passes; refusals that keep coming for 5 s
	// are a flood and close the connection.
	env, _ := startWithMetrics(t, server.Config{Rate: actors.Rate{Messages: 1, Per: time.Hour}})
	c := env.Dial(env.DevLogin("flood"), "")
	c.NextOfType("system")
	c.Send(map[string]any{"text": true, "content": "allowed"})
	c.NextOfType("user")
	for i := 0; i < 100 && !c.IsClosed(); i++ {
		c.Send(map[string]any{"text": true, "content": fmt.Sprint("spam ", i)})
		time.Sleep(100 * time.Millisecond)
	}
	if code := c.Closed(); code != 1008 {
		t.Fatalf("close code %d, want 1008", code)
	}
	eventually(t, env.URL+"/metrics", map[string]float64{
		"pandachat_messages_broadcast_total":            1,
		`pandachat_rate_limited_total{action="closed"}`: 1,
		"pandachat_connections":                         0,
	})
	got := scrapeURL(t, env.URL+"/metrics")
	refused := got[`pandachat_rate_limited_total{action="refused"}`]
	if in := got["pandachat_messages_in_total"]; refused < 40 || in != 1+refused+1 {
		t.Errorf("messages in %v, refused %v: want every frame counted once, as accepted, refused (about 50 in 5 s) or the one that closed", in, refused)
	}
}

// Recalls, reactions, typing notices and mentions are counted by kind.
func TestEventMetrics(t *testing.T) {
	env, _ := startWithMetrics(t, server.Config{})
	alice, bob := env.DevLogin("alice"), env.DevLogin("bob")
	a, b := env.Dial(alice, "room=ev&v=2"), env.Dial(bob, "room=ev&v=2")
	a.NextOfType("system")
	b.NextOfType("system")
	a.Send(map[string]any{"text": true, "content": "hi @bob", "mentions": []string{bob.UserInfo["uid"].(string)}})
	a.NextOfType("user")
	b.Send(map[string]any{"react": 1, "emoji": "👍"})
	b.NextOfType("reaction")
	b.Send(map[string]any{"typing": true})
	b.Send(map[string]any{"typing": true}) // within 3 s: dropped, not counted
	a.Send(map[string]any{"recall": 1})
	a.NextOfType("recall")
	eventually(t, env.URL+"/metrics", map[string]float64{
		`pandachat_events_total{kind="recall"}`:   1,
		`pandachat_events_total{kind="reaction"}`: 1,
		`pandachat_events_total{kind="typing"}`:   1,
		`pandachat_events_total{kind="mention"}`:  1,
	})
}
