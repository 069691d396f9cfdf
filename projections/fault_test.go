package projections

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
)

// faultLog is a MemLog whose cursors fail as a broken connection or a bad
// payload would: the real log's faults cannot be produced on demand.
type faultLog struct {
	*events.MemLog
	// failFollow makes this many Follow calls fail.
	failFollow atomic.Int32
	// failAt makes Next fail with failErr when it would return seq failAt.
	failAt  atomic.Uint64
	failErr error
	// skip drops the record with this sequence.
	skip uint64
}

var _ events.Log = (*faultLog)(nil)

var errConnection = errors.New("nats: connection closed")

func (l *faultLog) Follow(ctx context.Context, from uint64) (events.Cursor, error) {
	if l.failFollow.Add(-1) >= 0 {
		return nil, errConnection
	}
	cur, err := l.MemLog.Follow(ctx, from)
	return &faultCursor{Cursor: cur, log: l}, err
}

type faultCursor struct {
	events.Cursor
	log *faultLog
}

func (c *faultCursor) Next(ctx context.Context, max int) ([]events.Record, error) {
	recs, err := c.Cursor.Next(ctx, 1)
	if err != nil {
		return nil, err
	}
	if at := c.log.failAt.Load(); at != 0 && recs[0].Seq == at {
		c.log.failAt.Store(0)
		return nil, c.log.failErr
	}
	if recs[0].Seq == c.log.skip {
		return c.Cursor.Next(ctx, 1)
	}
	return recs, nil
}

func TestLogErrorsAreRetried(t *testing.T) {
	log := &faultLog{MemLog: events.NewMemLog(), failErr: fmt.Errorf("fetch: %w", errConnection)}
	log.failFollow.Store(3)
	log.failAt.Store(5)
	w := newWorld(t, log)
	last := w.buildFabric()
	s := mustOpen(t, "", log)
	waitFor(t, s, last)
	require.NoError(t, s.Err())
	require.Len(t, queryInto[[]SiteView](t, s, "sites", ``), 2)
}

func TestUndecodableEventStopsTheRunner(t *testing.T) {
	log := &faultLog{MemLog: events.NewMemLog(), failErr: fmt.Errorf("event 4: %w", events.ErrDecode)}
	log.failAt.Store(4)
	w := newWorld(t, log)
	last := w.buildFabric()
	s := mustOpen(t, "", log)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.WaitFor(ctx, last)
	require.ErrorIs(t, err, ErrStopped)
	require.ErrorIs(t, err, events.ErrDecode)
	require.ErrorIs(t, s.Err(), events.ErrDecode)
	require.Equal(t, uint64(3), s.Checkpoint(), "nothing after the bad event is applied")
	st := queryInto[Status](t, s, "status", ``)
	require.Contains(t, st.ProjectionError, "does not decode")
}

func TestGapStopsTheRunner(t *testing.T) {
	log := &faultLog{MemLog: events.NewMemLog(), skip: 6}
	w := newWorld(t, log)
	last := w.buildFabric()
	s := mustOpen(t, "", log)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.ErrorIs(t, s.WaitFor(ctx, last), ErrOutOfOrder)
	require.Equal(t, uint64(5), s.Checkpoint())
}
