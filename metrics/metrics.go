// Package metrics counts what the server does and serves it to Prometheus at
// GET /metrics. One Metrics value observes both the actors (rooms, messages,
// store writes) and the HTTP edge (connections, logins, uploads).
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pandachat/pandachat/actors"
	"github.com/pandachat/pandachat/transport"
)

// Metrics implements actors.Observer and transport.Observer on its own
// registry, so several servers in one process (tests) never share counters.
// Every method is a few atomic adds: safe to call from actor goroutines.
type Metrics struct {
	reg *prometheus.Registry

	connections prometheus.Gauge
	rooms       prometheus.Gauge
	messagesIn  prometheus.Counter
	broadcast   prometheus.Counter
	messagesOut prometheus.Counter
	fanout      prometheus.Histogram
	storeWrite  prometheus.Histogram
	storeErrors prometheus.Counter
	slow        prometheus.Counter
	refused     prometheus.Counter // rate limit: message refused, connection kept
	limitClosed prometheus.Counter // rate limit: connection closed 1008
	logins      *prometheus.CounterVec
	uploads     prometheus.Counter
	uploadBytes prometheus.Counter
	events      *prometheus.CounterVec
}

var (
	_ actors.Observer    = (*Metrics)(nil)
	_ transport.Observer = (*Metrics)(nil)
)

// latencyBuckets span 50 µs to ~1.6 s: a fan-out to a few sockets takes
// microseconds, a synced Badger write milliseconds.
var latencyBuckets = prometheus.ExponentialBuckets(50e-6, 2, 16)

// New registers every metric, plus the Go runtime and process collectors.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	f := func(c prometheus.Collector) { m.reg.MustRegister(c) }
	m.connections = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "pandachat_connections", Help: "Open WebSocket connections.",
	})
	m.rooms = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "pandachat_rooms", Help: "Rooms running (a room stops when it has been empty for --room-idle).",
	})
	m.messagesIn = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pandachat_messages_in_total", Help: "Client frames received on chat connections, accepted or not.",
	})
	m.broadcast = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pandachat_messages_broadcast_total", Help: "Chat messages stored and fanned out to their room.",
	})
	m.messagesOut = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pandachat_messages_out_total", Help: "Chat messages queued to connections (one per message per member).",
	})
	m.fanout = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "pandachat_fanout_seconds", Help: "Time a room takes to queue one stored batch to all its members.",
		Buckets: latencyBuckets,
	})
	m.storeWrite = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "pandachat_store_write_seconds", Help: "Time of one store write of a room's message batch.",
		Buckets: latencyBuckets,
	})
	m.storeErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pandachat_store_write_errors_total", Help: "Message batches the store failed to write (senders were told; nothing delivered).",
	})
	m.slow = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pandachat_slow_consumer_closes_total", Help: "Connections closed with 1013 because their outbound queue was full.",
	})
	limited := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pandachat_rate_limited_total", Help: "Messages over the rate limit, by what happened: refused (ERR_RATE_LIMITED) or closed (1008).",
	}, []string{"action"})
	m.refused = limited.WithLabelValues("refused")
	m.limitClosed = limited.WithLabelValues("closed")
	m.logins = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pandachat_logins_total", Help: "Login requests by kind (code, dev, check) and result (ok, refused, unavailable, bad_request, throttled).",
	}, []string{"kind", "result"})
	m.uploads = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pandachat_uploads_total", Help: "Accepted media uploads.",
	})
	m.uploadBytes = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pandachat_upload_bytes_total", Help: "Bytes of accepted media uploads (a repeated file counts again, is stored once).",
	})
	m.events = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pandachat_events_total", Help: "Accepted frames of protocol version 2, by kind: recall, reaction, typing (notices sent on), mention (messages that mention someone).",
	}, []string{"kind"})
	for _, c := range []prometheus.Collector{
		m.connections, m.rooms, m.messagesIn, m.broadcast, m.messagesOut, m.fanout,
		m.storeWrite, m.storeErrors, m.slow, limited, m.logins, m.uploads, m.uploadBytes, m.events,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		f(c)
	}
	for _, kind := range []string{actors.EventRecall, actors.EventReaction, actors.EventTyping, actors.EventMention} {
		m.events.WithLabelValues(kind)
	}
	// Show every login series from the start, so rate() works on the first one.
	for _, kind := range []string{"code", "dev", "check"} {
		for _, result := range []string{"ok", "refused", "unavailable", "bad_request"} {
			m.logins.WithLabelValues(kind, result)
		}
	}
	return m
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Registry is where the metrics live, for callers that add their own.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// actors.Observer

func (m *Metrics) RoomStarted() { m.rooms.Inc() }
func (m *Metrics) RoomStopped() { m.rooms.Dec() }
func (m *Metrics) MessageIn()   { m.messagesIn.Inc() }

func (m *Metrics) Broadcast(msgs, deliveries int, took time.Duration) {
	m.broadcast.Add(float64(msgs))
	m.messagesOut.Add(float64(deliveries))
	m.fanout.Observe(took.Seconds())
}

func (m *Metrics) StoreWrite(took time.Duration, err error) {
	m.storeWrite.Observe(took.Seconds())
	if err != nil {
		m.storeErrors.Inc()
	}
}

func (m *Metrics) SlowConsumer() { m.slow.Inc() }

// Event counts one accepted recall, reaction, typing notice or message with mentions.
func (m *Metrics) Event(kind string) { m.events.WithLabelValues(kind).Inc() }

func (m *Metrics) RateLimited(closed bool) {
	if closed {
		m.limitClosed.Inc()
	} else {
		m.refused.Inc()
	}
}

// transport.Observer

func (m *Metrics) ConnOpened()               { m.connections.Inc() }
func (m *Metrics) ConnClosed()               { m.connections.Dec() }
func (m *Metrics) Login(kind, result string) { m.logins.WithLabelValues(kind, result).Inc() }

// Upload counts one accepted upload of size bytes (media.Service.OnUpload).
func (m *Metrics) Upload(size int64) {
	m.uploads.Inc()
	m.uploadBytes.Add(float64(size))
}
