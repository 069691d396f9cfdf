package handlers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nuid"

	"github.com/siterecovery/siterecovery/events"
)

// newID is a new unique id: of a command that came without one, or of a
// report.
func newID() string { return nuid.Next() }

// maxAttempts bounds how often a command is decided again after a conflict.
const maxAttempts = 10

// maxCommandIDLen leaves room in a token for undoSuffix.
const maxCommandIDLen = 100

// undoSuffix marks the command id of a compensation.
const undoSuffix = "-undo"

// Result is the reply to a command.
type Result struct {
	CommandID     string `json:"command_id"`
	CorrelationID string `json:"correlation_id"`
	// Job is the id of the long operation the command started, if any.
	Job string `json:"job,omitempty"`
	// Seq is the log sequence of the command's last event: a query with
	// after_seq=Seq reads the command's writes.
	Seq    uint64        `json:"seq"`
	Events []events.Type `json:"events"`
	// Duplicate is true when the command id had been handled before and
	// nothing new was appended.
	Duplicate bool `json:"duplicate"`
}

// step decides the events of one aggregate: decide gets the aggregate
// folded (from the fold cache) and may load other aggregates.
type step struct {
	agg    events.Aggregate
	decide func(ctx context.Context, cur aggState) ([]events.Data, error)
}

type stepResult struct {
	seqs  []uint64
	types []events.Type
	dup   bool
}

// newMeta validates or generates the command id and stamps the command.
func newMeta(c common) (events.Meta, error) {
	id := c.CommandID
	if id == "" {
		id = newID()
	}
	if err := token("command_id", id); err != nil {
		return events.Meta{}, err
	}
	if len(id) > maxCommandIDLen {
		return events.Meta{}, fmt.Errorf("command_id is longer than %d: %w", maxCommandIDLen, events.ErrInvalidArgument)
	}
	actor := c.Actor
	if actor == "" {
		actor = "operator"
	}
	return events.Meta{At: time.Now().UTC(), CommandID: id, CorrelationID: id, Actor: actor}, nil
}

// runStep loads st.agg, answers from its history when the command was
// handled before, else decides and appends, deciding again on a conflict.
func (s *Service) runStep(ctx context.Context, meta events.Meta, st step) (stepResult, error) {
	for range maxAttempts {
		cur, err := s.cache.load(ctx, st.agg)
		if err != nil {
			return stepResult{}, err
		}
		if res, ok, err := handledBefore(cur.Marks, meta.CommandID); ok || err != nil {
			return res, err
		}
		evs, err := st.decide(ctx, cur)
		if err != nil || len(evs) == 0 {
			return stepResult{}, err
		}
		res, err := s.log.Append(ctx, st.agg, cur.Seq, meta, evs...)
		if errors.Is(err, events.ErrConflict) {
			continue
		}
		if err != nil {
			return stepResult{}, err
		}
		return stepResult{seqs: res.Seqs, types: typesOf(evs), dup: res.Duplicate}, nil
	}
	return stepResult{}, fmt.Errorf("%s kept changing after %d attempts: %w", st.agg, maxAttempts, events.ErrConflict)
}

// handledBefore finds the events command id appended to an aggregate in
// recs, its history or its Marks (aggState): routine events (agents' recovery
// points and progress) are not commands and are not looked at.
func handledBefore(recs []events.Record, id string) (stepResult, bool, error) {
	var res stepResult
	for _, r := range recs {
		switch r.Meta.CommandID {
		case id:
			res.seqs, res.types = append(res.seqs, r.Seq), append(res.types, r.Type())
		case id + undoSuffix:
			return stepResult{}, true, fmt.Errorf("command %s failed and was undone; send it again with a new command_id: %w",
				id, events.ErrConflict)
		}
	}
	res.dup = len(res.seqs) > 0
	return res, res.dup, nil
}

func typesOf(evs []events.Data) []events.Type {
	ts := make([]events.Type, len(evs))
	for i, ev := range evs {
		ts[i] = ev.EventType()
	}
	return ts
}

// sagaStep is a step and, when it may have to be given back, its undo.
type sagaStep struct {
	step
	undo *step
}

// runSaga runs steps in order. When one fails, the undo steps of those done
// run in reverse under the command id plus undoSuffix, and the first error
// is returned.
func (s *Service) runSaga(ctx context.Context, meta events.Meta, steps []sagaStep) (Result, error) {
	var out []stepResult
	for i, st := range steps {
		res, err := s.runStep(ctx, meta, st.step)
		if err != nil {
			s.undo(ctx, meta, steps[:i])
			return Result{}, err
		}
		out = append(out, res)
	}
	return newResult(meta, out...), nil
}

func (s *Service) undo(ctx context.Context, meta events.Meta, done []sagaStep) {
	undoMeta := meta
	undoMeta.CommandID = meta.CommandID + undoSuffix
	for _, st := range slices.Backward(done) {
		if st.undo == nil {
			continue
		}
		if _, err := s.runStep(ctx, undoMeta, *st.undo); err != nil {
			s.logger.Error().Err(err).Str(logCommandID, meta.CommandID).Stringer(logAggregate, st.undo.agg).
				Msg("undo of a failed command failed; the claim stays until retried")
		}
	}
}

// newResult joins the results of a command's steps.
func newResult(meta events.Meta, steps ...stepResult) Result {
	r := Result{CommandID: meta.CommandID, CorrelationID: meta.CorrelationID, Events: []events.Type{}}
	sawDup, sawNew := false, false
	for _, st := range steps {
		r.Events = append(r.Events, st.types...)
		for _, seq := range st.seqs {
			r.Seq = max(r.Seq, seq)
		}
		switch {
		case st.dup:
			sawDup = true
		case len(st.seqs) > 0:
			sawNew = true
		}
	}
	r.Duplicate = sawDup && !sawNew
	return r
}

// runOne runs a command that appends to one aggregate.
func (s *Service) runOne(ctx context.Context, meta events.Meta, agg events.Aggregate,
	decide func(context.Context, aggState) ([]events.Data, error)) (Result, error) {
	res, err := s.runStep(ctx, meta, step{agg: agg, decide: decide})
	if err != nil {
		return Result{}, err
	}
	return newResult(meta, res), nil
}

// decodeCommand decodes body into r, whose common part is c, checks it
// with validate and stamps the command.
func decodeCommand(body []byte, r any, c *common, validate func() error) (events.Meta, error) {
	if err := decodeRequest(body, r); err != nil {
		return events.Meta{}, err
	}
	if err := validate(); err != nil {
		return events.Meta{}, err
	}
	return newMeta(*c)
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
