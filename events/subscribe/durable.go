package subscribe

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/siterecovery/siterecovery/events"
)

// Defaults of DurableConfig.
const (
	DefaultAckWait       = 2 * time.Minute
	DefaultMaxAckPending = 64
)

// DurableConfig configures a shared durable consumer.
type DurableConfig struct {
	// Name of the durable consumer (a subject token); required.
	Name string
	// Stream is the event stream (default SR_EVENTS).
	Stream string
	// Types filters the events (none: every event).
	Types []events.Type
	// AckWait is how long an unacknowledged delivery waits before it is
	// delivered again (default DefaultAckWait); Delivery.InProgress resets it.
	AckWait time.Duration
	// MaxAckPending bounds deliveries in flight (default DefaultMaxAckPending).
	MaxAckPending int
}

// Durable is a durable pull consumer on the event stream, shared by every
// process that opens it under the same name: each event goes to one of
// them, in stream order, at least once (until acked); the server keeps the
// position, so a process that restarts resumes after the last acked event.
// Next is used by one goroutine at a time; a Delivery may be acked from any.
type Durable struct {
	msgs jetstream.MessagesContext

	mu     sync.Mutex
	closed bool
}

// Delivery is one delivered event. Err is set (and Record empty) when the
// stored message is not a valid event: the caller decides, e.g. Term.
type Delivery struct {
	Record events.Record
	// Payload is the event's envelope JSON as stored.
	Payload []byte
	// NumDelivered counts deliveries of this event (1 the first time).
	NumDelivered uint64
	Err          error
	msg          jetstream.Msg
}

// OpenDurable creates the durable consumer, or updates an existing one to
// cfg, and starts pulling. The connection stays the caller's.
func OpenDurable(ctx context.Context, nc *nats.Conn, cfg DurableConfig) (*Durable, error) {
	cc, err := consumerConfig(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.Stream == "" {
		cfg.Stream = DefaultStream
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("durable %s: %w", cfg.Name, err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, cfg.Stream, cc)
	if err != nil {
		return nil, fmt.Errorf("durable %s on %s: %w", cfg.Name, cfg.Stream, err)
	}
	msgs, err := cons.Messages(jetstream.PullMaxMessages(cc.MaxAckPending))
	if err != nil {
		return nil, fmt.Errorf("durable %s: %w", cfg.Name, err)
	}
	return &Durable{msgs: msgs}, nil
}

func consumerConfig(cfg DurableConfig) (jetstream.ConsumerConfig, error) {
	if err := events.ValidateToken("durable name", cfg.Name); err != nil {
		return jetstream.ConsumerConfig{}, fmt.Errorf("durable: %w", err)
	}
	subjects, err := filters(cfg.Types)
	if err != nil {
		return jetstream.ConsumerConfig{}, err
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = DefaultAckWait
	}
	if cfg.MaxAckPending <= 0 {
		cfg.MaxAckPending = DefaultMaxAckPending
	}
	return jetstream.ConsumerConfig{
		Durable: cfg.Name, FilterSubjects: subjects, DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: cfg.AckWait, MaxAckPending: cfg.MaxAckPending,
		MaxDeliver: -1,
	}, nil
}

// Next returns the next delivery, waiting until one comes or ctx ends.
func (d *Durable) Next(ctx context.Context) (*Delivery, error) {
	m, err := d.msgs.Next(jetstream.NextContext(ctx))
	if err != nil {
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			return nil, ErrClosed
		}
		return nil, fmt.Errorf("durable: next: %w", err)
	}
	del := &Delivery{Payload: m.Data(), msg: m}
	if md, err := m.Metadata(); err == nil {
		del.NumDelivered = md.NumDelivered
	}
	del.Record, del.Err = decode(m)
	return del, nil
}

// drainWait bounds the wait for one buffered message while closing.
const drainWait = 200 * time.Millisecond

// Close stops pulling and gives back the events pulled ahead but not yet
// returned by Next (nak without delay), so another process gets them now
// rather than after AckWait. Deliveries returned by Next and not acked are
// the caller's to Nak; those it leaves are delivered again after AckWait.
// Close must not run concurrently with Next. It is safe to call twice.
func (d *Durable) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	d.msgs.Drain()
	var first error
	for {
		m, err := d.msgs.Next(jetstream.NextMaxWait(drainWait))
		if err != nil {
			d.msgs.Stop()
			return first
		}
		if err := m.Nak(); err != nil && first == nil {
			first = fmt.Errorf("durable: give back a pulled event: %w", err)
		}
	}
}

// Ack acknowledges the delivery and waits for the server to confirm it, so
// an acked event is not delivered again.
func (d *Delivery) Ack(ctx context.Context) error { return d.msg.DoubleAck(ctx) }

// InProgress tells the server the event is still being handled: its
// AckWait starts again.
func (d *Delivery) InProgress() error { return d.msg.InProgress() }

// Nak asks for the event to be delivered again after delay.
func (d *Delivery) Nak(delay time.Duration) error { return d.msg.NakWithDelay(delay) }

// Term stops delivering the event (e.g. one that is not a valid event).
func (d *Delivery) Term() error { return d.msg.Term() }
