package projections

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
)

// downLog is a log whose LastSeq fails while down is set (a stream
// electing a leader).
type downLog struct {
	events.Log
	down atomic.Bool
}

func (l *downLog) LastSeq(ctx context.Context) (uint64, error) {
	if l.down.Load() {
		return 0, errors.New("nats: timeout")
	}
	return l.Log.LastSeq(ctx)
}

// syncBuffer is a log sink safe for the store's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestStatusSaysCatchingUp: while the runner is held behind the log, and
// while the log does not answer, status says catching_up with why, and the
// store logs it; once it has caught up it says so.
func TestStatusSaysCatchingUp(t *testing.T) {
	log := &downLog{Log: events.NewMemLog()}
	last := newWorld(t, log).buildFabric()
	hold := make(chan struct{})
	release := sync.OnceFunc(func() { close(hold) })
	var out syncBuffer
	s, err := open(context.Background(), filepath.Join(t.TempDir(), "projections.db"), log, zerolog.New(&out),
		withBatch(1), withAfterCommit(func(seq uint64) error {
			if seq == 2 {
				<-hold
			}
			return nil
		}))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	t.Cleanup(release) // before Close: the runner may be held

	held := "the read models are at 2, the log at " + strconv.FormatUint(last, 10)
	waitStatus(t, s, func(st Status) bool { return st.CatchingUp && st.CatchingUpReason == held })
	require.Eventually(t, func() bool { return strings.Contains(out.String(), `"message":"catching up"`) }, 5*time.Second, 10*time.Millisecond)

	release()
	waitFor(t, s, last)
	waitStatus(t, s, func(st Status) bool { return !st.CatchingUp })
	require.Eventually(t, func() bool { return strings.Contains(out.String(), `"message":"caught up with the log"`) }, 5*time.Second, 10*time.Millisecond)

	log.down.Store(true)
	st := waitStatus(t, s, func(st Status) bool { return st.CatchingUp })
	require.Equal(t, "the event log does not answer (nats: timeout)", st.CatchingUpReason)
	log.down.Store(false)
	waitStatus(t, s, func(st Status) bool { return !st.CatchingUp })
}

// waitStatus waits, at most 10 s, until the status query satisfies cond.
func waitStatus(t *testing.T, s *Store, cond func(Status) bool) Status {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := queryInto[Status](t, s, "status", "{}")
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("status not as expected within 10 s: %+v", st)
		}
		time.Sleep(20 * time.Millisecond) // polling the query with a deadline
	}
}
