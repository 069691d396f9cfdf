package projections

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
)

var errKilled = errors.New("killed after commit")

// TestCrashBetweenCommitAndNextBatch kills the runner right after a bbolt
// commit, again and again while events keep coming, reopens the file each
// time, and shows that no event was applied twice or skipped: the counter
// equals the checkpoint, jobs have no step twice, and the result equals a
// rebuild from scratch.
func TestCrashBetweenCommitAndNextBatch(t *testing.T) {
	log := events.NewMemLog()
	g := newGen(newWorld(t, log), 7, 8)
	for range 500 {
		g.step()
	}
	path := filepath.Join(t.TempDir(), "projections.db")

	var mu sync.Mutex // the generator is not safe for concurrent use
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for range 3000 {
			select {
			case <-stop:
				return
			default:
			}
			mu.Lock()
			g.step()
			mu.Unlock()
		}
	})

	for kill := range 6 {
		batches := 0
		s := mustOpen(t, path, log, withBatch(17), withAfterCommit(func(uint64) error {
			batches++
			if batches == 3+kill {
				return errKilled
			}
			return nil
		}))
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := s.WaitFor(ctx, ^uint64(0))
		cancel()
		require.ErrorIs(t, err, ErrStopped)
		require.ErrorIs(t, s.Err(), errKilled)
		checkCounter(t, s)
		require.NoError(t, s.Close())
	}
	close(stop)
	wg.Wait()

	last, err := log.LastSeq(context.Background())
	require.NoError(t, err)
	s := mustOpen(t, path, log)
	waitFor(t, s, last)
	checkCounter(t, s)
	checkModel(t, s, log, g)

	fresh := mustOpen(t, "", log)
	waitFor(t, fresh, last)
	names := []string{}
	for _, v := range g.vms {
		if v.created {
			names = append(names, v.name)
		}
	}
	require.Equal(t, allAnswers(t, fresh, names...), allAnswers(t, s, names...))
}

// TestCloseMidStream closes the store while it is behind and reopens it,
// many times: each reopen resumes at the checkpoint + 1.
func TestCloseMidStream(t *testing.T) {
	log := events.NewMemLog()
	g := newGen(newWorld(t, log), 9, 6)
	var last uint64
	for range 2000 {
		last = g.step()
	}
	path := filepath.Join(t.TempDir(), "projections.db")
	prev := uint64(0)
	for s := mustOpen(t, path, log, withBatch(50)); ; s = mustOpen(t, path, log, withBatch(50)) {
		require.GreaterOrEqual(t, s.Checkpoint(), prev)
		waitFor(t, s, min(last, s.Checkpoint()+1))
		prev = s.Checkpoint()
		checkCounter(t, s)
		require.NoError(t, s.Close())
		if prev == last {
			break
		}
	}
	s := mustOpen(t, path, log)
	checkModel(t, s, log, g)
}
