package events

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// MemLog is a Log in memory, for unit tests and simulations. It keeps the
// same contract as the JetStream log (the conformance suite in
// events/logtest runs against both) but nothing survives the process.
type MemLog struct {
	mu      sync.Mutex
	recs    []Record
	last    map[Aggregate]uint64
	msgIDs  map[string]uint64
	changed chan struct{} // closed and replaced on every append
	closed  bool
}

var (
	_ Log         = (*MemLog)(nil)
	_ RangeLoader = (*MemLog)(nil)
)

// NewMemLog returns an empty in-memory log.
func NewMemLog() *MemLog {
	return &MemLog{last: map[Aggregate]uint64{}, msgIDs: map[string]uint64{}, changed: make(chan struct{})}
}

// Append implements Log.
func (l *MemLog) Append(ctx context.Context, agg Aggregate, expected uint64, meta Meta, evs ...Data) (AppendResult, error) {
	if err := CheckAppend(agg, meta, evs); err != nil {
		return AppendResult{}, err
	}
	if err := ctx.Err(); err != nil {
		return AppendResult{}, err
	}
	if meta.At.IsZero() {
		meta.At = time.Now().UTC()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return AppendResult{}, ErrClosed
	}
	if seq, ok := l.msgIDs[MsgID(meta.CommandID, agg, len(evs)-1)]; ok {
		return AppendResult{Seqs: l.seqsEndingAt(seq, len(evs)), Duplicate: true}, nil
	}
	if got := l.last[agg]; got != expected {
		return AppendResult{}, fmt.Errorf("append to %s at %d, last is %d: %w", agg, expected, got, ErrConflict)
	}
	res := AppendResult{Seqs: make([]uint64, len(evs))}
	for i, ev := range evs {
		seq := uint64(len(l.recs)) + 1
		l.recs = append(l.recs, Record{Seq: seq, Aggregate: agg, Index: i, Meta: meta, Data: ev})
		l.msgIDs[MsgID(meta.CommandID, agg, i)] = seq
		res.Seqs[i] = seq
	}
	l.last[agg] = res.Last()
	close(l.changed)
	l.changed = make(chan struct{})
	return res, nil
}

func (l *MemLog) seqsEndingAt(last uint64, n int) []uint64 {
	seqs := make([]uint64, n)
	for i := range seqs {
		seqs[i] = last - uint64(n-1-i)
	}
	return seqs
}

// Load implements Log.
func (l *MemLog) Load(ctx context.Context, agg Aggregate) ([]Record, error) {
	return l.LoadAfter(ctx, agg, 0)
}

// LoadAfter implements RangeLoader. It scans only the records above after.
func (l *MemLog) LoadAfter(ctx context.Context, agg Aggregate, after uint64) ([]Record, error) {
	if err := agg.Validate(); err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Record
	for _, r := range l.recs[min(after, uint64(len(l.recs))):] {
		if r.Aggregate == agg {
			out = append(out, r)
		}
	}
	return out, nil
}

// LastSeq implements Log.
func (l *MemLog) LastSeq(ctx context.Context) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return uint64(len(l.recs)), nil
}

// Follow implements Log.
func (l *MemLog) Follow(ctx context.Context, from uint64) (Cursor, error) {
	if from == 0 {
		from = 1
	}
	return &memCursor{log: l, next: from, done: make(chan struct{})}, nil
}

// Close makes further appends fail with ErrClosed.
func (l *MemLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	return nil
}

type memCursor struct {
	log       *MemLog
	next      uint64
	done      chan struct{}
	closeOnce sync.Once
}

func (c *memCursor) Next(ctx context.Context, max int) ([]Record, error) {
	if max < 1 {
		max = 1
	}
	for {
		c.log.mu.Lock()
		n := uint64(len(c.log.recs))
		changed := c.log.changed
		if c.next <= n {
			end := min(n, c.next+uint64(max)-1)
			out := append([]Record(nil), c.log.recs[c.next-1:end]...)
			c.log.mu.Unlock()
			c.next = end + 1
			return out, nil
		}
		c.log.mu.Unlock()
		select {
		case <-changed:
		case <-c.done:
			return nil, ErrClosed
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (c *memCursor) Close() error {
	c.closeOnce.Do(func() { close(c.done) })
	return nil
}
