package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/siterecovery/siterecovery/events"
)

// Config configures a Log.
type Config struct {
	// Replicas of the stream when Open creates it, and the minimum it
	// accepts of an existing one. 0 means automatic: 3 when the connection
	// sees a JetStream cluster of at least 3 servers, else 1.
	Replicas int
	// Logger receives the log's own messages.
	Logger zerolog.Logger
	// Stream is the stream name (default SR_EVENTS).
	Stream string
}

// Log is the event log on a JetStream stream. It is safe for concurrent use.
type Log struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	stream string
	logger zerolog.Logger
	// replicated: direct gets may be answered by a replica behind the
	// leader, so loads first ask the leader where the aggregate ends.
	replicated bool

	mu      sync.Mutex
	closed  bool
	cursors map[*cursor]struct{}
}

var (
	_ events.Log         = (*Log)(nil)
	_ events.RangeLoader = (*Log)(nil)
)

// opTimeout bounds a call whose context has no deadline.
const opTimeout = 10 * time.Second

// loadBatch is how many messages one direct batch get asks for.
const loadBatch = 512

// Open creates the event stream if it does not exist, or checks that the
// existing one is at least as strong as docs/reference/subjects.md requires
// (refusing a weaker one with a *StreamConfigError, changing nothing), and
// returns the log on it. The connection stays the caller's: Close does not
// close it.
func Open(ctx context.Context, nc *nats.Conn, cfg Config) (*Log, error) {
	if nc == nil {
		return nil, errors.New("open event log: no NATS connection")
	}
	if cfg.Stream == "" {
		cfg.Stream = DefaultStream
	}
	if cfg.Replicas < 0 {
		return nil, fmt.Errorf("open event log: replicas %d: %w", cfg.Replicas, events.ErrInvalidArgument)
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = autoReplicas(nc)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("open event log: %w", err)
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	got, err := ensureStream(ctx, js, streamConfig(cfg.Stream, cfg.Replicas))
	if err != nil {
		return nil, fmt.Errorf("open event log: %w", err)
	}
	l := &Log{nc: nc, js: js, stream: cfg.Stream, replicated: got.Replicas > 1, cursors: map[*cursor]struct{}{}}
	l.logger = cfg.Logger.With().Str("stream", cfg.Stream).Logger()
	l.logger.Debug().Int("replicas", cfg.Replicas).Msg("event log open")
	return l, nil
}

// Close closes every open cursor and makes further calls fail with
// events.ErrClosed. It is safe to call twice.
func (l *Log) Close() error {
	l.mu.Lock()
	l.closed = true
	cs := l.cursors
	l.cursors = map[*cursor]struct{}{}
	l.mu.Unlock()
	var first error
	for c := range cs {
		if err := c.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// StreamName is the name of the stream the log is on.
func (l *Log) StreamName() string { return l.stream }

func (l *Log) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// LastSeq implements events.Log.
func (l *Log) LastSeq(ctx context.Context) (uint64, error) {
	if l.isClosed() {
		return 0, events.ErrClosed
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	s, err := l.js.Stream(ctx, l.stream)
	if err != nil {
		return 0, fmt.Errorf("event log last sequence: %w", err)
	}
	return s.CachedInfo().State.LastSeq, nil
}

// Load implements events.Log. It reads the aggregate's messages with direct
// batch gets filtered on the aggregate's subjects: one round trip per
// loadBatch events, no consumer. On a replicated stream it first asks the
// stream leader for the aggregate's last sequence and reads until it has
// it, so a load sees every append acknowledged before it started. A stored
// message that is not a valid event fails the load with a *RecordError
// naming its sequence.
func (l *Log) Load(ctx context.Context, agg events.Aggregate) ([]events.Record, error) {
	return l.LoadAfter(ctx, agg, 0)
}

// LoadAfter implements events.RangeLoader as Load does, with the first
// direct get starting at sequence after+1: its cost is that of the events
// above after, whatever came before.
func (l *Log) LoadAfter(ctx context.Context, agg events.Aggregate, after uint64) ([]events.Record, error) {
	if err := agg.Validate(); err != nil {
		return nil, err
	}
	if l.isClosed() {
		return nil, events.ErrClosed
	}
	msgs, err := l.loadRetry(ctx, agg, after)
	if err != nil {
		return nil, err
	}
	var recs []events.Record
	for _, m := range msgs {
		r, err := decodeRecord(m.Sequence, m.Subject, m.Header, m.Data)
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", agg, err)
		}
		recs = append(recs, r)
	}
	return recs, nil
}

// loadRetry is loadConsistent reading again while no server answers (a
// stream leader election, a server restarting: the same as an append
// rides over), until the load's deadline.
func (l *Log) loadRetry(ctx context.Context, agg events.Aggregate, after uint64) ([]*jetstream.RawStreamMsg, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	return whileNoResponders(ctx, func() ([]*jetstream.RawStreamMsg, error) { return l.loadConsistent(ctx, agg, after) })
}

// loadRaw returns the aggregate's stored messages above after, in order.
func (l *Log) loadRaw(ctx context.Context, agg events.Aggregate, after uint64) ([]*jetstream.RawStreamMsg, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var out []*jetstream.RawStreamMsg
	for seq := after + 1; ; {
		msgs, more, err := l.getBatch(ctx, agg.Filter(), seq)
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", agg, err)
		}
		out = append(out, msgs...)
		if !more || len(msgs) == 0 {
			return out, nil
		}
		seq = msgs[len(msgs)-1].Sequence + 1
	}
}

// getBatch reads up to loadBatch messages on filter from seq; more reports
// whether the server says more follow.
func (l *Log) getBatch(ctx context.Context, filter string, seq uint64) ([]*jetstream.RawStreamMsg, bool, error) {
	it, err := jetstreamext.GetBatch(ctx, l.js, l.stream, loadBatch,
		jetstreamext.GetBatchSeq(seq), jetstreamext.GetBatchSubject(filter))
	if err != nil {
		return nil, false, err
	}
	var msgs []*jetstream.RawStreamMsg
	more := false
	for m, err := range it {
		if errors.Is(err, jetstreamext.ErrNoMessages) {
			break
		}
		if err != nil {
			return nil, false, err
		}
		msgs = append(msgs, m)
		pending, perr := strconv.ParseUint(m.Header.Get("Nats-Num-Pending"), 10, 64)
		more = perr != nil || pending > 0
	}
	return msgs, more, nil
}

// withTimeout bounds ctx by opTimeout unless it has a deadline already.
func withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, opTimeout)
}
