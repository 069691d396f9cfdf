package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/jetstream"
	"github.com/siterecovery/siterecovery/projections"
)

// HTTP limits.
const (
	// MaxBody is the largest command body the API accepts.
	MaxBody = 1 << 20
	// apiRequestTimeout bounds one forwarded command or query, its resends
	// included: a little more than the service's own timeout, so its
	// answer wins, and more than a takeover after a site loss.
	apiRequestTimeout = 35 * time.Second
	// streamMaxClients bounds the concurrent event streams (each holds an
	// ordered consumer on the log).
	streamMaxClients = 64
	// streamKeepalive is how often an idle event stream sends a comment.
	streamKeepalive = 15 * time.Second
	// metricsScrapeTimeout bounds the reads of one /metrics scrape.
	metricsScrapeTimeout = 10 * time.Second
)

// Log field names of the HTTP side.
const (
	logHTTPPath   = "path"
	logHTTPStatus = "status"
	logHTTPCode   = "code"
)

// EventSource is what the event stream and the metrics read of the event
// log; *jetstream.Log implements it (events.Log's reading half). Safe for
// concurrent use; Follow's cursor is used by one goroutine.
type EventSource interface {
	// Follow returns a cursor over the log from sequence from, in order.
	Follow(ctx context.Context, from uint64) (events.Cursor, error)
	// LastSeq returns the sequence of the last event, 0 for an empty log.
	LastSeq(ctx context.Context) (uint64, error)
}

// ReadModel is what the metrics read of the projections;
// *projections.Store implements it.
type ReadModel interface {
	// Query answers a query by name (vms, hosts, jobs, ...) with JSON
	// params; safe for concurrent use.
	Query(ctx context.Context, name string, params json.RawMessage) (any, error)
	// Checkpoint is the log sequence the read models have applied.
	Checkpoint() uint64
}

var (
	_ EventSource = (*jetstream.Log)(nil)
	_ ReadModel   = (*projections.Store)(nil)
)

// httpAPI serves the API, the event stream, the metrics and the console.
// Its handlers run concurrently; stop ends the event streams so that the
// server's Shutdown does not wait for them.
type httpAPI struct {
	nc      *nats.Conn
	log     EventSource
	logger  zerolog.Logger
	streams chan struct{} // a token per open event stream
	ctx     context.Context
	stop    context.CancelFunc
}

// Register adds the API, the event stream, /metrics and the console to mux.
// srv is the server that serves mux: its Shutdown ends the event streams.
func Register(mux *http.ServeMux, srv *http.Server, nc *nats.Conn, log EventSource, rm ReadModel, logger zerolog.Logger) {
	api := newHTTPAPI(nc, log, logger.With().Str("component", "http").Logger())
	srv.RegisterOnShutdown(api.stop)
	api.register(mux)
	mux.Handle("GET /metrics", newMetricsHandler(log, rm, api.logger))
	mux.Handle("/", consoleHandler())
}

func newHTTPAPI(nc *nats.Conn, log EventSource, logger zerolog.Logger) *httpAPI {
	ctx, stop := context.WithCancel(context.Background())
	return &httpAPI{nc: nc, log: log, logger: logger, streams: make(chan struct{}, streamMaxClients), ctx: ctx, stop: stop}
}

func (a *httpAPI) register(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/{$}", a.index)
	mux.HandleFunc("GET /api/v1/stream", a.stream)
	mux.HandleFunc("GET /api/v1/{query}", a.query)
	mux.HandleFunc("POST /api/v1/{noun}/{verb}", a.command)
	mux.HandleFunc("/api/", a.unknownRoute)
}
