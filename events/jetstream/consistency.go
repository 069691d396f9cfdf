package jetstream

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

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

// leaderLastSeq asks the stream leader (the message get API, not a direct
// get) for the sequence of the last message on filter, 0 if none.
func (l *Log) leaderLastSeq(ctx context.Context, filter string) (uint64, error) {
	req, err := json.Marshal(struct {
		LastFor string `json:"last_by_subj"`
	}{filter})
	if err != nil {
		return 0, err
	}
	msg, err := l.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+l.stream, req)
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
