package projections

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/siterecovery/siterecovery/events"
)

// AutomationsQuery is the name of the query Automations answers
// (sr.q.automations).
const AutomationsQuery = "automations"

// AutomationRule is one rule as the automations query shows it.
type AutomationRule struct {
	Name    string          `json:"name"`
	On      events.Type     `json:"on"`
	VM      string          `json:"vm,omitempty"`
	Exec    string          `json:"exec"`
	Timeout events.Duration `json:"timeout"`
	// AddedSeq is the log sequence of the rule's automation_added: it runs
	// for later events only.
	AddedSeq uint64         `json:"added_seq"`
	LastRun  *AutomationRun `json:"last_run,omitempty"`
}

// AutomationRun is the outcome of a rule's last run.
type AutomationRun struct {
	EventSeq uint64    `json:"event_seq"`
	ExitCode int       `json:"exit_code"`
	Error    string    `json:"error,omitempty"`
	At       time.Time `json:"at"`
}

// ruleSpan is one life of a rule: from its automation_added to its
// automation_removed (0 while it lives).
type ruleSpan struct {
	rule           events.AutomationAddedData
	added, removed uint64
}

// Automations is the read model of automation rules. It keeps them in
// memory, folded from the whole log at each Open (rules are few; their
// events are the only ones it keeps), by one goroutine that follows the log
// in order. It answers the automations query and, for the automation
// runner, which rules were in force at a given event (RulesAt). It is safe
// for concurrent use.
type Automations struct {
	log    events.Log
	logger zerolog.Logger

	mu      sync.Mutex
	seq     uint64
	live    map[string]*AutomationRule
	spans   []ruleSpan
	changed chan struct{} // closed and replaced when seq moves
	closed  bool
	cancel  context.CancelFunc
	done    chan struct{}
}

// NewAutomations returns the read model over log; Open starts it.
func NewAutomations(log events.Log, logger zerolog.Logger) *Automations {
	return &Automations{
		log: log, logger: logger.With().Str("component", "automations").Logger(),
		live: map[string]*AutomationRule{}, changed: make(chan struct{}),
	}
}

// Open starts following the log from its beginning. It fails when already
// opened.
func (a *Automations) Open(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("automations: open: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cancel != nil || a.closed {
		return fmt.Errorf("automations: already opened")
	}
	runCtx, cancel := context.WithCancel(context.Background())
	a.cancel, a.done = cancel, make(chan struct{})
	go a.run(runCtx)
	return nil
}

// Close stops following and waits for the goroutine. Safe to call twice.
func (a *Automations) Close() error {
	a.mu.Lock()
	cancel, done := a.cancel, a.done
	a.cancel, a.closed = nil, true
	a.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	return nil
}

func (a *Automations) run(ctx context.Context) {
	defer close(a.done)
	wait := minBackoff
	for ctx.Err() == nil {
		err := a.followOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		a.logger.Warn().Err(err).Uint64(fieldCheckpoint, a.Seq()).Msg("following the event log; retrying")
		if !sleep(ctx, wait) {
			return
		}
		wait = min(2*wait, maxBackoff)
	}
}

func (a *Automations) followOnce(ctx context.Context) error {
	cur, err := a.log.Follow(ctx, a.Seq()+1)
	if err != nil {
		return err
	}
	defer cur.Close()
	for {
		recs, err := cur.Next(ctx, 1024)
		if err != nil {
			return err
		}
		a.applyBatch(recs)
	}
}

// applyBatch folds recs (in log order, following Seq) and wakes WaitFor.
func (a *Automations) applyBatch(recs []events.Record) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range recs {
		if r.Seq <= a.seq {
			continue
		}
		a.apply(r)
		a.seq = r.Seq
	}
	close(a.changed)
	a.changed = make(chan struct{})
}

func (a *Automations) apply(r events.Record) {
	switch d := r.Data.(type) {
	case events.AutomationAddedData:
		a.live[d.Name] = &AutomationRule{Name: d.Name, On: d.On, VM: d.VM, Exec: d.Exec, Timeout: d.Timeout, AddedSeq: r.Seq}
		a.spans = append(a.spans, ruleSpan{rule: d, added: r.Seq})
	case events.AutomationRemovedData:
		delete(a.live, d.Name)
		for i := range a.spans {
			if a.spans[i].rule.Name == d.Name && a.spans[i].removed == 0 {
				a.spans[i].removed = r.Seq
			}
		}
	case events.AutomationExecutedData:
		if rule := a.live[d.Name]; rule != nil && (rule.LastRun == nil || d.EventSeq >= rule.LastRun.EventSeq) {
			rule.LastRun = &AutomationRun{EventSeq: d.EventSeq, ExitCode: d.ExitCode, Error: d.Error, At: r.Meta.At}
		}
	}
}

// Seq is the sequence of the last event folded.
func (a *Automations) Seq() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.seq
}

// WaitFor returns once the events up to seq are folded, or with ctx's
// error, or ErrClosed.
func (a *Automations) WaitFor(ctx context.Context, seq uint64) error {
	for {
		a.mu.Lock()
		reached, closed, changed := a.seq >= seq, a.closed, a.changed
		a.mu.Unlock()
		switch {
		case reached:
			return nil
		case closed:
			return ErrClosed
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("automations: wait for event %d: %w", seq, ctx.Err())
		}
	}
}

// RulesAt returns the rules in force when the event at seq was appended:
// added before it and not removed before it. Call WaitFor(seq) first.
func (a *Automations) RulesAt(seq uint64) []events.AutomationAddedData {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []events.AutomationAddedData
	for _, s := range a.spans {
		if s.added < seq && (s.removed == 0 || s.removed > seq) {
			out = append(out, s.rule)
		}
	}
	return out
}

// Query answers the automations query: every live rule, sorted by name.
// params may carry min_seq only. Errors wrap events.ErrInvalidArgument, or
// are ctx's while waiting for min_seq.
func (a *Automations) Query(ctx context.Context, name string, params json.RawMessage) (any, error) {
	if name != AutomationsQuery {
		return nil, fmt.Errorf("unknown query %q (queries: %s): %w", name, AutomationsQuery, events.ErrInvalidArgument)
	}
	p, err := parseParams(name, nil, params)
	if err != nil {
		return nil, err
	}
	if p.MinSeq > 0 {
		if err := a.WaitFor(ctx, p.MinSeq); err != nil {
			return nil, fmt.Errorf("query %s: %w", name, err)
		}
	}
	return a.list(), nil
}

func (a *Automations) list() []AutomationRule {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]AutomationRule, 0, len(a.live))
	for _, r := range a.live {
		c := *r
		if r.LastRun != nil {
			run := *r.LastRun
			c.LastRun = &run
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(x, y AutomationRule) int {
		switch {
		case x.Name < y.Name:
			return -1
		case x.Name > y.Name:
			return 1
		}
		return 0
	})
	return out
}
