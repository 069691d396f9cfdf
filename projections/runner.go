package projections

import (
	"context"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/siterecovery/siterecovery/events"
)

// Backoff between attempts to reach the log after an error.
const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// run is the runner goroutine: it applies the log to the read models until
// ctx is cancelled (Close) or a fatal error.
func (s *Store) run(ctx context.Context) {
	defer close(s.done)
	err := s.follow(ctx)
	if err != nil {
		s.logger.Error().Err(err).Uint64(fieldCheckpoint, s.Checkpoint()).Msg("projection runner stopped")
	}
	s.stop(err)
}

// follow follows the log, retrying with backoff after errors of the log;
// it returns nil when ctx is done and the error when it is fatal.
func (s *Store) follow(ctx context.Context) error {
	wait, failing := minBackoff, false
	for {
		applied, err := s.followOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if isFatal(err) {
			return err
		}
		if applied > 0 {
			wait = minBackoff
			if failing {
				s.logger.Info().Uint64(fieldCheckpoint, s.Checkpoint()).Msg("event log reachable again")
			}
			failing = false
		}
		if !failing {
			s.logger.Warn().Err(err).Uint64(fieldCheckpoint, s.Checkpoint()).Msg("event log unavailable, retrying")
			failing = true
		}
		if !sleep(ctx, wait) {
			return nil
		}
		wait = min(2*wait, maxBackoff)
	}
}

// isFatal reports whether err stops the runner: an event that does not
// decode (it would not decode next time either) or a failure to apply.
func isFatal(err error) bool {
	var fe *fatalError
	return errors.As(err, &fe) || errors.Is(err, events.ErrDecode) ||
		errors.Is(err, events.ErrUnknownType) || errors.Is(err, events.ErrUnknownVersion)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// followOnce opens a cursor at the checkpoint + 1 and applies batches until
// an error. It returns how many events it applied.
func (s *Store) followOnce(ctx context.Context) (int, error) {
	last, err := s.log.LastSeq(ctx)
	if err != nil {
		return 0, fmt.Errorf("last sequence of the log: %w", err)
	}
	if cp := s.Checkpoint(); last < cp {
		return 0, &fatalError{fmt.Errorf("checkpoint %d, but the log ends at %d (delete the file to rebuild it): %w", cp, last, ErrAhead)}
	}
	cur, err := s.log.Follow(ctx, s.Checkpoint()+1)
	if err != nil {
		return 0, fmt.Errorf("follow the log from %d: %w", s.Checkpoint()+1, err)
	}
	defer func() {
		if err := cur.Close(); err != nil {
			s.logger.Debug().Err(err).Msg("close cursor")
		}
	}()
	applied := 0
	for {
		recs, err := cur.Next(ctx, s.batchSize)
		if err != nil {
			return applied, fmt.Errorf("read the log after %d: %w", s.Checkpoint(), err)
		}
		if err := s.applyBatch(recs); err != nil {
			return applied, &fatalError{err}
		}
		applied += len(recs)
		if s.afterCommit != nil {
			if err := s.afterCommit(s.Checkpoint()); err != nil {
				return applied, &fatalError{err}
			}
		}
	}
}

// applyBatch applies recs and moves the checkpoint in one transaction.
func (s *Store) applyBatch(recs []events.Record) error {
	if len(recs) == 0 {
		return nil
	}
	var last uint64
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := newBatch(tx, s.cache)
		for _, r := range recs {
			if r.Seq != b.checkpoint+1 {
				return fmt.Errorf("event %d (%s %s) after checkpoint %d: %w", r.Seq, r.Aggregate, r.Type(), b.checkpoint, ErrOutOfOrder)
			}
			if err := b.apply(r); err != nil {
				return fmt.Errorf("apply event %d (%s %s): %w", r.Seq, r.Aggregate, r.Type(), err)
			}
			b.checkpoint, b.applied = r.Seq, b.applied+1
		}
		last = b.checkpoint
		return b.flush()
	})
	if err != nil {
		s.cache = newRunnerCache() // it may hold what was rolled back
		return err
	}
	s.committed(last)
	s.logger.Debug().Int(fieldEvents, len(recs)).Uint64(fieldCheckpoint, last).Msg("applied")
	return nil
}
