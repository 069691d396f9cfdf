package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/siterecovery/siterecovery/events"
)

// loadConsistent reads agg's messages above sequence after, on a
// replicated stream up to the last one the leader has.
func (l *Log) loadConsistent(ctx context.Context, agg events.Aggregate, after uint64) ([]*jetstream.RawStreamMsg, error) {
	if !l.replicated {
		return l.loadRaw(ctx, agg, after)
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	last, err := l.leaderLastSeq(ctx, agg.Filter())
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", agg, err)
	}
	return l.loadAfterAtLeast(ctx, agg, after, last)
}

// loadAtLeast reads agg until its last message is at least seq: a direct get
// may come from a replica a moment behind the leader.
func (l *Log) loadAtLeast(ctx context.Context, agg events.Aggregate, seq uint64) ([]*jetstream.RawStreamMsg, error) {
	return l.loadAfterAtLeast(ctx, agg, 0, seq)
}

// loadAfterAtLeast reads agg's messages above after until the last one read
// is at least seq (nothing to wait for when seq <= after).
func (l *Log) loadAfterAtLeast(ctx context.Context, agg events.Aggregate, after, seq uint64) ([]*jetstream.RawStreamMsg, error) {
	wait := 2 * time.Millisecond
	for {
		msgs, err := l.loadRaw(ctx, agg, after)
		if err != nil {
			return nil, err
		}
		if seq <= after || (len(msgs) > 0 && msgs[len(msgs)-1].Sequence >= seq) {
			return msgs, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("load %s: replica behind sequence %d: %w", agg, seq, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// msgGetResponse is the part of the stream message get API's reply used here.
type msgGetResponse struct {
	Error   *jetstream.APIError `json:"error"`
	Message *struct {
		Seq uint64 `json:"seq"`
	} `json:"message"`
}

// leaderAsk bounds one request to the stream leader. A stream whose leader
// is lost does not answer at all until it elects another (its API
// subscriptions stay on every server: no "no responders"), which takes up
// to about ten seconds after a kill -9 (docs/operations.md, "Losing a
// site"): an attempt is given up after leaderAsk and sent again, so that
// the call returns soon after the new leader is elected rather than at its
// own deadline.
const leaderAsk = 2 * time.Second

// leaderLastSeq asks the stream leader (the message get API, not a direct
// get) for the sequence of the last message on filter, 0 if none. It asks
// again, every leaderAsk, while no leader answers, until ctx ends.
func (l *Log) leaderLastSeq(ctx context.Context, filter string) (uint64, error) {
	req, err := json.Marshal(struct {
		LastFor string `json:"last_by_subj"`
	}{filter})
	if err != nil {
		return 0, err
	}
	msg, err := l.askLeader(ctx, "$JS.API.STREAM.MSG.GET."+l.stream, req)
	if err != nil {
		return 0, fmt.Errorf("last sequence of %s: %w", filter, err)
	}
	var resp msgGetResponse
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return 0, fmt.Errorf("last sequence of %s: %w", filter, err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound:
		return 0, nil
	case resp.Error != nil:
		return 0, fmt.Errorf("last sequence of %s: %w", filter, resp.Error)
	case resp.Message == nil:
		return 0, fmt.Errorf("last sequence of %s: empty reply", filter)
	}
	return resp.Message.Seq, nil
}

// askLeader sends req to subject, answered by the stream leader, each
// attempt bounded by leaderAsk, until one is answered or ctx ends.
func (l *Log) askLeader(ctx context.Context, subject string, req []byte) (*nats.Msg, error) {
	for {
		actx, cancel := context.WithTimeout(ctx, leaderAsk)
		msg, err := l.nc.RequestWithContext(actx, subject, req)
		cancel()
		unanswered := errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrNoResponders)
		if err == nil || !unanswered || ctx.Err() != nil {
			return msg, err
		}
		l.logger.Debug().Err(err).Str("subject", subject).Msg("stream leader did not answer; asking again")
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(25 * time.Millisecond):
		}
	}
}
