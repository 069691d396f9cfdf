package handlers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/subscribe"
)

// AutomationConsumer is the name of the durable consumer on SR_EVENTS that
// the automation runners of every serve instance share.
const AutomationConsumer = "sr-automation"

// automationActor is the actor of automation_executed events.
const automationActor = "automation"

// Defaults of AutomationRunnerConfig.
const (
	DefaultAutomationParallel = 4
	// DefaultAutomationProgress is how often a running command's delivery is
	// marked in progress; it must stay well below the consumer's AckWait.
	DefaultAutomationProgress = 30 * time.Second
	// automationRetry is how long a delivery that could not be handled
	// waits before it is delivered again.
	automationRetry = 5 * time.Second
)

// AutomationInbox delivers every event of the log at least once, in log
// order, shared between runners: *subscribe.Durable is one.
type AutomationInbox interface {
	// Next returns the next delivery, waiting until one comes or ctx ends;
	// it returns subscribe.ErrClosed after Close. One caller at a time.
	Next(ctx context.Context) (*subscribe.Delivery, error)
	// Close stops the deliveries; those not acked are delivered again. It
	// is safe to call twice, not concurrently with Next.
	Close() error
}

// RuleBook says which automation rules were in force at an event:
// *projections.Automations is one. Safe for concurrent use.
type RuleBook interface {
	// WaitFor returns once the rules are known up to log sequence seq, or
	// with ctx's error.
	WaitFor(ctx context.Context, seq uint64) error
	// RulesAt returns the rules added before seq and not removed before it.
	RulesAt(seq uint64) []events.AutomationAddedData
}

// AutomationRunnerConfig configures a runner; zero values take defaults.
type AutomationRunnerConfig struct {
	// Parallel bounds the events handled at once.
	Parallel int
	// Progress is how often a running command's delivery is marked in
	// progress (below the consumer's AckWait).
	Progress time.Duration
	// OutputLimit bounds the output recorded (its last bytes).
	OutputLimit int
}

func (c AutomationRunnerConfig) withDefaults() AutomationRunnerConfig {
	if c.Parallel <= 0 {
		c.Parallel = DefaultAutomationParallel
	}
	if c.Progress <= 0 {
		c.Progress = DefaultAutomationProgress
	}
	if c.OutputLimit <= 0 {
		c.OutputLimit = DefaultAutomationOutput
	}
	return c
}

// AutomationRunner runs the automation rules. It takes the log's events
// from inbox (at least once, shared with the other serve instances' runners
// so that each event goes to one of them) and, for every rule in force at
// the event whose on and vm match it, runs the rule's command (sh -c, the
// event's envelope JSON on stdin, SR_EVENT_TYPE, SR_VM, SR_EVENT_SEQ and
// SR_RULE in its environment, killed with its process group at the rule's
// timeout) and records the outcome as an automation_executed on the rule,
// under a command id made of the event's sequence: a redelivered event
// appends its outcome once. Before running, it looks for the outcome in the
// rule's history and does not run again when it is there. The delivery is
// acked once every rule's outcome is recorded. So a command runs once per
// event in the normal case, across restarts, and again only when a runner
// stops between running it and recording its outcome (at least once).
type AutomationRunner struct {
	log    events.Log
	cache  *foldCache
	rules  RuleBook
	inbox  AutomationInbox
	cfg    AutomationRunnerConfig
	logger zerolog.Logger

	mu sync.Mutex
	// stopTaking ends the loop taking events; cancel kills the running
	// commands (Close: the first, then the second).
	stopTaking context.CancelFunc
	cancel     context.CancelFunc
	closed     bool
	loop       sync.WaitGroup
	wg         sync.WaitGroup
}

// NewAutomationRunner returns a runner; it owns inbox (Close closes it).
func NewAutomationRunner(log events.Log, rules RuleBook, inbox AutomationInbox, cfg AutomationRunnerConfig, logger zerolog.Logger) *AutomationRunner {
	return &AutomationRunner{
		log: log, cache: newFoldCache(log, foldCacheSize), rules: rules, inbox: inbox, cfg: cfg.withDefaults(),
		logger: logger.With().Str("component", "automation").Logger(),
	}
}

// Open starts taking events. It fails when already opened.
func (a *AutomationRunner) Open(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("automation runner: open: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cancel != nil || a.closed {
		return errors.New("automation runner: already opened")
	}
	runCtx, cancel := context.WithCancel(context.Background())
	takeCtx, stopTaking := context.WithCancel(runCtx)
	a.cancel, a.stopTaking = cancel, stopTaking
	a.loop.Add(1)
	go a.run(takeCtx, runCtx)
	return nil
}

// Close stops taking events and closes the inbox (which gives back the
// events pulled ahead), then kills the running commands and gives their
// events back (their outcome is not recorded: they run again, at once, on
// another runner or at the next start), and waits for every goroutine
// until ctx ends. The inbox is closed first so that an event given back is
// not delivered again to this runner's own pull, where it would wait for
// the ack wait. Safe to call twice.
func (a *AutomationRunner) Close(ctx context.Context) error {
	a.mu.Lock()
	cancel, stopTaking, closed := a.cancel, a.stopTaking, a.closed
	a.cancel, a.stopTaking, a.closed = nil, nil, true
	a.mu.Unlock()
	if closed {
		return nil
	}
	if cancel == nil { // never opened
		return a.inbox.Close()
	}
	stopTaking()
	if err := waitCtx(ctx, &a.loop); err != nil {
		cancel()
		return fmt.Errorf("automation runner: close: %w", err)
	}
	err := a.inbox.Close()
	cancel()
	if werr := waitCtx(ctx, &a.wg); werr != nil {
		err = errors.Join(err, fmt.Errorf("automation runner: close: %w", werr))
	}
	return err
}

// run takes deliveries until take ends and handles up to cfg.Parallel at
// once, each until ctx ends.
func (a *AutomationRunner) run(take, ctx context.Context) {
	defer a.loop.Done()
	slots := make(chan struct{}, a.cfg.Parallel)
	for {
		select {
		case slots <- struct{}{}:
		case <-take.Done():
			return
		}
		d, err := a.inbox.Next(take)
		if err != nil {
			<-slots
			if take.Err() != nil || errors.Is(err, subscribe.ErrClosed) {
				return
			}
			a.logger.Warn().Err(err).Msg("taking the next event; retrying")
			if !sleepCtx(take, time.Second) {
				return
			}
			continue
		}
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			defer func() { <-slots }()
			a.handle(ctx, d)
		}()
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// handle runs the rules matching one delivery and acks it, or gives it
// back to be delivered again.
func (a *AutomationRunner) handle(ctx context.Context, d *subscribe.Delivery) {
	if d.Err != nil {
		a.logger.Error().Err(d.Err).Msg("event log holds a message that is not an event; automation skips it")
		a.settle(d.Term(), "term")
		return
	}
	rec := d.Record
	if rec.Aggregate.Kind != events.KindAutomation {
		if err := a.runRules(ctx, d); err != nil {
			a.giveBack(ctx, d, err)
			return
		}
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	a.settle(d.Ack(actx), "ack")
}

// giveBack naks d: at once when the runner is closing, after a delay when
// handling failed.
func (a *AutomationRunner) giveBack(ctx context.Context, d *subscribe.Delivery, err error) {
	if ctx.Err() != nil {
		a.settle(d.Nak(0), "nak")
		return
	}
	a.logger.Error().Err(err).Uint64("seq", d.Record.Seq).Str("type", string(d.Record.Type())).
		Msg("automation not run or not recorded; the event will be delivered again")
	a.settle(d.Nak(automationRetry), "nak")
}

func (a *AutomationRunner) settle(err error, what string) {
	if err != nil {
		a.logger.Warn().Err(err).Msg("automation delivery " + what + " failed; the event will be delivered again")
	}
}

// runRules runs every rule in force at the event that matches it.
func (a *AutomationRunner) runRules(ctx context.Context, d *subscribe.Delivery) error {
	rec := d.Record
	if err := a.rules.WaitFor(ctx, rec.Seq); err != nil {
		return fmt.Errorf("rules at event %d: %w", rec.Seq, err)
	}
	for _, rule := range a.rules.RulesAt(rec.Seq) {
		if !ruleMatches(rule, rec) {
			continue
		}
		if err := a.runRule(ctx, d, rule); err != nil {
			return fmt.Errorf("rule %s on event %d: %w", rule.Name, rec.Seq, err)
		}
	}
	return nil
}

// runRule runs rule for the delivery unless its outcome is recorded
// already, then records the outcome.
func (a *AutomationRunner) runRule(ctx context.Context, d *subscribe.Delivery, rule events.AutomationAddedData) error {
	agg := automationAgg(rule.Name)
	cur, err := a.cache.load(ctx, agg)
	if err != nil {
		return err
	}
	if cur.executed(d.Record.Seq) {
		a.logger.Debug().Str("rule", rule.Name).Uint64("seq", d.Record.Seq).Msg("already run")
		return nil
	}
	stopProgress := a.keepInProgress(d)
	out, stopped := runAutomation(ctx, rule, d.Record, d.Payload, a.cfg.OutputLimit)
	stopProgress()
	if stopped {
		return ctx.Err()
	}
	a.logger.Info().Str("rule", rule.Name).Uint64("seq", d.Record.Seq).Int("exit_code", out.ExitCode).Str("error", out.Error).Msg("automation ran")
	return a.record(context.WithoutCancel(ctx), agg, out)
}

// keepInProgress marks d in progress every cfg.Progress until stopped.
func (a *AutomationRunner) keepInProgress(d *subscribe.Delivery) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(a.cfg.Progress)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				a.settle(d.InProgress(), "in-progress")
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// record appends out to the rule's aggregate once: under the command id of
// the event's sequence, deciding again when another outcome was appended
// meanwhile. It is bounded so that Close is not held forever.
func (a *AutomationRunner) record(ctx context.Context, agg events.Aggregate, out events.AutomationExecutedData) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	id := automationCommandID(out.EventSeq)
	meta := events.Meta{At: time.Now().UTC(), CommandID: id, CorrelationID: id, Actor: automationActor}
	for range maxAttempts {
		cur, err := a.cache.load(ctx, agg)
		if err != nil {
			return err
		}
		if cur.executed(out.EventSeq) {
			return nil
		}
		_, err = a.log.Append(ctx, agg, cur.Seq, meta, out)
		if !errors.Is(err, events.ErrConflict) {
			return err
		}
	}
	return fmt.Errorf("%s kept changing after %d attempts: %w", agg, maxAttempts, events.ErrConflict)
}
