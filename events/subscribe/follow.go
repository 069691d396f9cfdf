package subscribe

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/siterecovery/siterecovery/events"
)

// Subscription reads typed events in log order. Next is used by one
// goroutine at a time; Close may be called from any goroutine, and twice.
type Subscription struct {
	msgs jetstream.MessagesContext

	mu     sync.Mutex
	closed bool
}

// Follow subscribes to the events of types (every event when none is
// given) on SR_EVENTS from sequence from (1, or 0, for the beginning) over
// an ordered consumer. Unknown types are refused with an error matching
// events.ErrUnknownType. The connection stays the caller's.
func Follow(ctx context.Context, nc *nats.Conn, from uint64, types ...events.Type) (*Subscription, error) {
	return FollowStream(ctx, nc, DefaultStream, from, types...)
}

// FollowStream is Follow on the named stream.
func FollowStream(ctx context.Context, nc *nats.Conn, stream string, from uint64, types ...events.Type) (*Subscription, error) {
	subjects, err := filters(types)
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: subjects, DeliverPolicy: jetstream.DeliverAllPolicy}
	if from > 1 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, from
	}
	cons, err := js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return nil, fmt.Errorf("subscribe to %s: %w", stream, err)
	}
	msgs, err := cons.Messages()
	if err != nil {
		return nil, fmt.Errorf("subscribe to %s: %w", stream, err)
	}
	return &Subscription{msgs: msgs}, nil
}

// Next returns the next event, waiting until one is appended or ctx ends.
// A stored message that is not a valid event is a *RecordError; the
// subscription goes on after it.
func (s *Subscription) Next(ctx context.Context) (events.Record, error) {
	m, err := s.msgs.Next(jetstream.NextContext(ctx))
	if err != nil {
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			return events.Record{}, ErrClosed
		}
		return events.Record{}, fmt.Errorf("subscribe: next: %w", err)
	}
	return decode(m)
}

// All ranges over the events until ctx ends or an error occurs; the error
// (ctx's, or a *RecordError) is the last pair yielded.
func (s *Subscription) All(ctx context.Context) iter.Seq2[events.Record, error] {
	return func(yield func(events.Record, error) bool) {
		for {
			r, err := s.Next(ctx)
			if !yield(r, err) || err != nil {
				return
			}
		}
	}
}

// Close stops the subscription. It is safe to call twice.
func (s *Subscription) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		s.msgs.Stop()
	}
	return nil
}
