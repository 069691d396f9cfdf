package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/siterecovery/siterecovery/events"
)

// Server error codes that mean "the aggregate moved on, or this command was
// appended already": a wrong last subject sequence (single server, or its
// constant form on replicated streams), a duplicate message id in an atomic
// batch, a duplicate still in process.
var conflictCodes = []jetstream.ErrorCode{
	jetstream.JSErrCodeStreamWrongLastSequence,
	jetstream.JSErrCodeStreamWrongLastSequenceConstant,
	errCodeBatchDuplicateMsgID,
	errCodeDuplicateInProcess,
}

// Server error codes that nats.go does not name.
const (
	// errCodeBatchDuplicateMsgID: "atomic publish batch contains duplicate
	// message id" (a retried batch, on a cluster).
	errCodeBatchDuplicateMsgID jetstream.ErrorCode = 10201
	// errCodeDuplicateInProcess: "duplicate message id is in process".
	errCodeDuplicateInProcess jetstream.ErrorCode = 10158
)

// batchFlow sends an atomic batch without waiting for an ack of its first
// message: the server checks the whole batch at commit and answers there.
var batchFlow = jetstreamext.BatchFlowControl{AckFirst: false}

// Append implements events.Log. One event is a plain publish, several an
// atomic batch publish; either way the first message carries the expected
// last sequence of the aggregate's subjects and every message its
// events.MsgID. When the server reports a conflict, Append reads the
// aggregate: if the command's events are there (a retry, whatever expected
// was) it returns their sequences with Duplicate set, else an error matching
// events.ErrConflict.
func (l *Log) Append(ctx context.Context, agg events.Aggregate, expected uint64, meta events.Meta, evs ...events.Data) (events.AppendResult, error) {
	if err := events.CheckAppend(agg, meta, evs); err != nil {
		return events.AppendResult{}, err
	}
	if l.isClosed() {
		return events.AppendResult{}, events.ErrClosed
	}
	if meta.At.IsZero() {
		meta.At = time.Now().UTC()
	}
	msgs, err := l.messages(agg, expected, meta, evs)
	if err != nil {
		return events.AppendResult{}, err
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	res, err := l.publishRetry(ctx, msgs)
	if err == nil {
		return res, nil
	}
	if !isConflict(err) {
		return events.AppendResult{}, fmt.Errorf("append to %s: %w", agg, err)
	}
	return l.resolveConflict(ctx, agg, expected, meta.CommandID, len(evs), err)
}

// messages encodes evs as the messages of one append.
func (l *Log) messages(agg events.Aggregate, expected uint64, meta events.Meta, evs []events.Data) ([]*nats.Msg, error) {
	msgs := make([]*nats.Msg, len(evs))
	for i, ev := range evs {
		payload, err := events.Encode(meta, ev)
		if err != nil {
			return nil, fmt.Errorf("append to %s: %w", agg, err)
		}
		m := nats.NewMsg(agg.Subject(ev.EventType()))
		m.Data = payload
		m.Header.Set(jetstream.MsgIDHeader, events.MsgID(meta.CommandID, agg, i))
		msgs[i] = m
	}
	first := msgs[0].Header
	first.Set(jetstream.ExpectedStreamHeader, l.stream)
	first.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(expected, 10))
	first.Set(jetstream.ExpectedLastSubjSeqSubjHeader, agg.Filter())
	return msgs, nil
}

// publishRetry publishes, and publishes again while no server answers (a
// stream leader being elected, a server restarting) until ctx ends. A retry
// is safe: the msg ids and the expected sequence make a second landing a
// duplicate or a conflict that resolveConflict recognises.
func (l *Log) publishRetry(ctx context.Context, msgs []*nats.Msg) (events.AppendResult, error) {
	return whileNoResponders(ctx, func() (events.AppendResult, error) { return l.publish(ctx, msgs) })
}

// whileNoResponders calls f again, backing off, while no server answers
// (a stream leader election, a server restarting), until ctx ends; it
// returns f's last result.
func whileNoResponders[T any](ctx context.Context, f func() (T, error)) (T, error) {
	wait := 25 * time.Millisecond
	for {
		res, err := f()
		if !errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, jetstream.ErrNoStreamResponse) {
			return res, err
		}
		select {
		case <-ctx.Done():
			return res, err
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// publish sends msgs, one plainly, several as an atomic batch.
func (l *Log) publish(ctx context.Context, msgs []*nats.Msg) (events.AppendResult, error) {
	if len(msgs) == 1 {
		ack, err := l.js.PublishMsg(ctx, msgs[0])
		if err != nil {
			return events.AppendResult{}, err
		}
		return events.AppendResult{Seqs: []uint64{ack.Sequence}, Duplicate: ack.Duplicate}, nil
	}
	ack, err := jetstreamext.PublishMsgBatch(ctx, l.js, msgs, batchFlow)
	if err != nil {
		return events.AppendResult{}, err
	}
	n := uint64(len(msgs))
	if ack.BatchSize != n || ack.Sequence < n {
		return events.AppendResult{}, fmt.Errorf("atomic batch of %d acknowledged as %d ending at %d", n, ack.BatchSize, ack.Sequence)
	}
	res := events.AppendResult{Seqs: make([]uint64, n)}
	for i := range res.Seqs {
		res.Seqs[i] = ack.Sequence - n + 1 + uint64(i)
	}
	return res, nil
}

func isConflict(err error) bool {
	var jsErr jetstream.JetStreamError
	if !errors.As(err, &jsErr) || jsErr.APIError() == nil {
		return false
	}
	code := jsErr.APIError().ErrorCode
	for _, c := range conflictCodes {
		if code == c {
			return true
		}
	}
	return false
}

// resolveConflict tells a retried command (all of its n events already in
// the aggregate, found by message id) from a real conflict. It reads the
// aggregate up to the last sequence the stream leader has, so that a
// replica behind the leader cannot hide the first append.
func (l *Log) resolveConflict(ctx context.Context, agg events.Aggregate, expected uint64, commandID string, n int, cause error) (events.AppendResult, error) {
	last, err := l.leaderLastSeq(ctx, agg.Filter())
	if err != nil {
		return events.AppendResult{}, fmt.Errorf("append to %s: %v; then %w", agg, cause, err)
	}
	msgs, err := l.loadAtLeast(ctx, agg, last)
	if err != nil {
		return events.AppendResult{}, fmt.Errorf("append to %s: %v; then %w", agg, cause, err)
	}
	index := make(map[string]int, n)
	for i := range n {
		index[events.MsgID(commandID, agg, i)] = i
	}
	seqs := make([]uint64, n)
	found := 0
	for _, m := range msgs {
		if i, ok := index[m.Header.Get(jetstream.MsgIDHeader)]; ok && seqs[i] == 0 {
			seqs[i] = m.Sequence
			found++
		}
	}
	if found == n {
		l.logger.Debug().Str("aggregate", agg.String()).Str("command_id", commandID).Msg("retried append recognised as duplicate")
		return events.AppendResult{Seqs: seqs, Duplicate: true}, nil
	}
	return events.AppendResult{}, fmt.Errorf("append to %s at %d, last is %d (%v): %w", agg, expected, last, cause, events.ErrConflict)
}
