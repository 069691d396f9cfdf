package events

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Meta is what an event carries besides its data: when it was decided, by
// which command, in which operation (correlation id, also the job id) and by
// whom.
type Meta struct {
	At            time.Time
	CommandID     string
	CorrelationID string
	Actor         string
}

// Record is an event as stored in the log.
type Record struct {
	// Seq is the event's position in the whole log, starting at 1.
	Seq uint64
	// Aggregate is the aggregate the event belongs to.
	Aggregate Aggregate
	// Index is the event's position within the command that appended it.
	Index int
	Meta  Meta
	Data  Data
}

// Type is the record's event type.
func (r Record) Type() Type { return r.Data.EventType() }

// AppendResult says where an append landed.
type AppendResult struct {
	// Seqs are the log sequences of the appended events, in order.
	Seqs []uint64
	// Duplicate is true when the command id had been appended before to this
	// aggregate: nothing new was written and Seqs are the first append's.
	Duplicate bool
}

// Last is the sequence of the last appended event.
func (r AppendResult) Last() uint64 {
	if len(r.Seqs) == 0 {
		return 0
	}
	return r.Seqs[len(r.Seqs)-1]
}

// Log is the event log. It is safe for concurrent use.
type Log interface {
	// Append appends evs, in order and atomically (all or none), to agg.
	// expected is the sequence of agg's last event as loaded (0 for an
	// aggregate with no events); if agg has moved on, Append returns an error
	// matching ErrConflict and writes nothing. meta.CommandID must be set:
	// appending the same command id to the same aggregate again writes
	// nothing and returns the first append's sequences with Duplicate set,
	// whatever expected is.
	Append(ctx context.Context, agg Aggregate, expected uint64, meta Meta, evs ...Data) (AppendResult, error)

	// Load returns agg's events in log order; none (and no error) for an
	// aggregate that has no events.
	Load(ctx context.Context, agg Aggregate) ([]Record, error)

	// Follow returns a cursor over the whole log from sequence from
	// (1 for the beginning), in order, with no gaps or repeats.
	Follow(ctx context.Context, from uint64) (Cursor, error)

	// LastSeq returns the sequence of the last event in the log, 0 if empty.
	LastSeq(ctx context.Context) (uint64, error)
}

// Cursor reads the log in order. It is used by one goroutine.
type Cursor interface {
	// Next returns between 1 and max records following the last one
	// returned, waiting until at least one exists or ctx is done. It
	// returns what is available now rather than waiting to fill max.
	Next(ctx context.Context, max int) ([]Record, error)
	// Close releases the cursor. It is safe to call twice.
	Close() error
}

// MsgID is the deduplication id of the index-th event of command commandID
// on agg. It is unique per command, aggregate and position, so a retried
// command never appends twice.
func MsgID(commandID string, agg Aggregate, index int) string {
	return fmt.Sprintf("%s:%s:%s:%d", commandID, agg.Kind, agg.ID, index)
}

// MsgIndex is the event index at the end of a MsgID, 0 when msgID carries
// no such index (an event published by another tool).
func MsgIndex(msgID string) int {
	i := strings.LastIndexByte(msgID, ':')
	if i < 0 {
		return 0
	}
	n, err := strconv.Atoi(msgID[i+1:])
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// CheckAppend validates an append's arguments: a valid aggregate, a command
// id, at least one event, every event of a known type. Log implementations
// call it before writing anything.
func CheckAppend(agg Aggregate, meta Meta, evs []Data) error {
	if err := agg.Validate(); err != nil {
		return err
	}
	if meta.CommandID == "" {
		return fmt.Errorf("append to %s: %w", agg, &TokenError{Field: "command_id", Value: ""})
	}
	if len(evs) == 0 {
		return fmt.Errorf("append to %s: %w", agg, ErrNoEvents)
	}
	for _, ev := range evs {
		if ev == nil {
			return fmt.Errorf("append to %s: nil event: %w", agg, ErrUnknownType)
		}
		if !ev.EventType().Known() {
			return fmt.Errorf("append to %s: %q: %w", agg, ev.EventType(), ErrUnknownType)
		}
		if ev.EventType().Kind() != agg.Kind {
			return fmt.Errorf("append to %s: event %s belongs to kind %s: %w", agg, ev.EventType(), ev.EventType().Kind(), ErrUnknownType)
		}
	}
	return nil
}

// RangeLoader is a Log that can load the tail of an aggregate's history:
// callers that keep a folded aggregate read only what was appended since.
// Logs implement it optionally; LoadAfter falls back to Load when they do
// not.
type RangeLoader interface {
	// LoadAfter returns agg's events with a sequence above after, in log
	// order; none (and no error) when there are none. It sees every append
	// acknowledged before it started, as Load does. LoadAfter(ctx, agg, 0)
	// is Load(ctx, agg).
	LoadAfter(ctx context.Context, agg Aggregate, after uint64) ([]Record, error)
}

// LoadAfter returns agg's events with a sequence above after: with
// l.LoadAfter when l is a RangeLoader, else by loading everything and
// dropping the head.
func LoadAfter(ctx context.Context, l Log, agg Aggregate, after uint64) ([]Record, error) {
	if rl, ok := l.(RangeLoader); ok {
		return rl.LoadAfter(ctx, agg, after)
	}
	recs, err := l.Load(ctx, agg)
	if err != nil {
		return nil, err
	}
	i := 0
	for i < len(recs) && recs[i].Seq <= after {
		i++
	}
	return recs[i:], nil
}
