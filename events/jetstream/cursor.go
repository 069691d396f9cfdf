package jetstream

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/siterecovery/siterecovery/events"
)

// followBuffer is how many messages a cursor's consumer pulls ahead.
const followBuffer = 256

// followExpiry is how long one pull request of a cursor lasts. It is short
// because in a cluster the first pull can reach the new consumer before it
// listens and is lost; the next pull then comes within followExpiry.
const followExpiry = time.Second

// Follow implements events.Log with an ordered consumer (in memory, one
// replica, recreated by the client after a disconnect at the next expected
// sequence, so nothing is missed or repeated) on the whole event stream
// from sequence from.
//
// A stored message that is not a valid event stops the cursor at it: Next
// returns the valid records before it, then a *RecordError naming its
// sequence on this and every later call. Nothing is skipped silently; a
// caller that decides to skip it closes the cursor and follows again from
// the RecordError's Seq + 1.
func (l *Log) Follow(ctx context.Context, from uint64) (events.Cursor, error) {
	if l.isClosed() {
		return nil, events.ErrClosed
	}
	if from == 0 {
		from = 1
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	cons, err := l.js.OrderedConsumer(ctx, l.stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: subjects,
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    from,
	})
	if err != nil {
		return nil, fmt.Errorf("follow event log from %d: %w", from, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(followBuffer), jetstream.PullExpiry(followExpiry))
	if err != nil {
		return nil, fmt.Errorf("follow event log from %d: %w", from, err)
	}
	c := &cursor{log: l, it: it}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		it.Stop()
		return nil, events.ErrClosed
	}
	l.cursors[c] = struct{}{}
	return c, nil
}

// cursor is an events.Cursor over an ordered consumer.
type cursor struct {
	log       *Log
	it        jetstream.MessagesContext
	bad       error // a *RecordError the cursor is stuck at
	closeOnce sync.Once
}

var _ events.Cursor = (*cursor)(nil)

// Next implements events.Cursor. It waits for the first record, then takes
// only those the consumer reports pending, so it never waits to fill max.
func (c *cursor) Next(ctx context.Context, max int) ([]events.Record, error) {
	if c.bad != nil {
		return nil, c.bad
	}
	max = maxOr1(max)
	var out []events.Record
	for len(out) < max {
		m, err := c.it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return c.failed(out, err)
		}
		md, err := m.Metadata()
		if err != nil {
			return c.failed(out, fmt.Errorf("follow event log: %w", err))
		}
		r, err := decodeRecord(md.Sequence.Stream, m.Subject(), m.Headers(), m.Data())
		if err != nil {
			c.bad = err
			return c.failed(out, err)
		}
		out = append(out, r)
		if md.NumPending == 0 {
			break
		}
	}
	return out, nil
}

// failed returns the records read so far (the error comes on the next call
// if it is sticky) or the error when there are none.
func (c *cursor) failed(out []events.Record, err error) ([]events.Record, error) {
	if len(out) > 0 {
		return out, nil
	}
	if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
		return nil, events.ErrClosed
	}
	return nil, err
}

func maxOr1(n int) int {
	if n < 1 {
		return 1
	}
	return n
}

// Close implements events.Cursor: it stops the consumer. Safe twice.
func (c *cursor) Close() error {
	c.closeOnce.Do(func() {
		c.it.Stop()
		c.log.mu.Lock()
		delete(c.log.cursors, c)
		c.log.mu.Unlock()
	})
	return nil
}
