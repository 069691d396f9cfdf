package projections

import (
	"context"
	"fmt"
	"time"
)

// The store says when it is catching up: while its checkpoint is below
// where the log ended a check ago (the runner has not applied what the log
// already had), or while the log does not answer (its stream electing a
// leader after a site loss: docs/operations.md, "Losing a site"). Events
// appended between two checks are not a lag: a busy log is always a few
// events ahead.

// Lag checks: every lagEvery, each ask of the log's end bounded by lagAsk.
const (
	lagEvery = time.Second
	lagAsk   = 2 * time.Second
)

// catchUp is the last lag check's verdict: the log did not answer (down,
// why), or the read models must reach target (the log's end at the check)
// to have caught up; zero when caught up.
type catchUp struct {
	down   string
	target uint64
}

// watchLag checks the lag every lagEvery until ctx ends, logging each
// change: "catching up" (a warning) and "caught up".
func (s *Store) watchLag(ctx context.Context) {
	defer close(s.lagDone)
	t := time.NewTicker(lagEvery)
	defer t.Stop()
	var prev uint64 // the log's end at the last check that had one
	first, logged := true, false
	for {
		last, c, ok := s.checkLag(ctx, prev, first)
		if ctx.Err() != nil {
			return
		}
		if ok {
			prev, first = last, false
		}
		logged = s.setCatchUp(c, last, logged)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// checkLag asks the log where it ends; ok says it answered.
func (s *Store) checkLag(ctx context.Context, prev uint64, first bool) (last uint64, c catchUp, ok bool) {
	actx, cancel := context.WithTimeout(ctx, lagAsk)
	defer cancel()
	last, err := s.log.LastSeq(actx)
	cp := s.Checkpoint()
	switch {
	case err != nil:
		return 0, catchUp{down: fmt.Sprintf("the event log does not answer (%v)", err)}, false
	case first && cp < last, !first && cp < prev:
		return last, catchUp{target: last}, true
	}
	return last, catchUp{}, true
}

// setCatchUp records a verdict and logs a change; logged says whether
// "catching up" was the last thing logged, and is returned updated.
func (s *Store) setCatchUp(c catchUp, last uint64, logged bool) bool {
	s.catchUp.Store(&c)
	behind, reason := s.CatchingUp()
	switch {
	case behind && !logged:
		s.logger.Warn().Str(fieldReason, reason).Uint64(fieldCheckpoint, s.Checkpoint()).Msg("catching up")
	case !behind && logged:
		s.logger.Info().Uint64(fieldCheckpoint, s.Checkpoint()).Uint64(fieldLogLast, last).Msg("caught up with the log")
	}
	return behind
}

// CatchingUp says whether the read models are catching up with the log, and
// why: the log did not answer at the last check, or the checkpoint is still
// below the log's end at the check that found it behind. Before the first
// check (at open) it says no.
func (s *Store) CatchingUp() (bool, string) {
	c := s.catchUp.Load()
	switch {
	case c == nil:
		return false, ""
	case c.down != "":
		return true, c.down
	case s.Checkpoint() < c.target:
		return true, fmt.Sprintf("the read models are at %d, the log at %d", s.Checkpoint(), c.target)
	}
	return false, ""
}
