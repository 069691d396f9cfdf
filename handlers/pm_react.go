package handlers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/agentproto"
)

// Failover steps named in failover_failed.
const (
	StepStopSource = "stop_source"
	StepReady      = "ready"
	StepVerify     = "verify"
)

// reactAttempts bounds how often a failed reaction (the log did not
// answer) is tried again before the manager moves on.
const reactAttempts = 5

// handle folds r into the state and runs its reactions, trying a failed one
// again a few times. A reaction still failing is logged here and left: the
// deadlines fire again, and the periodic sweep reconciles the plans.
func (p *PM) handle(ctx context.Context, r events.Record) {
	p.track(r)
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := p.react(ctx, r)
		if err == nil || ctx.Err() != nil {
			return
		}
		if attempt == reactAttempts {
			p.logger.Error().Err(err).Uint64("seq", r.Seq).Str("type", string(r.Type())).
				Stringer(logAggregate, r.Aggregate).Msg("process manager reaction failed; moving on")
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff *= 2
	}
}

// track keeps the deadlines, the reverse replications waiting for their
// first point and the running plan jobs.
func (p *PM) track(r events.Record) {
	p.mu.Lock()
	defer p.mu.Unlock()
	vm := r.Aggregate.ID
	switch d := r.Data.(type) {
	case events.FailoverStartedData:
		p.setDeadline(deadline{VM: vm, Kind: deadlineFailover, Start: r.Seq, At: r.Meta.At.Add(p.cfg.FailoverTimeout), Mode: d.Mode, FromHost: d.FromHost})
	case events.FailoverCompletedData, events.FailoverCancelledData:
		p.dropFailover(vm)
	case events.SourceStoppedData:
		p.dropDeadline(deadlineKey(deadlineSource, vm))
	case events.FailoverFailedData:
		if d.Mode == events.FailoverTest {
			p.dropDeadline(deadlineKey(deadlineTest, vm))
		} else {
			p.dropFailover(vm)
		}
	case events.TestFailoverStartedData:
		p.setDeadline(deadline{VM: vm, Kind: deadlineTest, Start: r.Seq, At: r.Meta.At.Add(p.cfg.FailoverTimeout)})
	case events.TestFailoverCompletedData:
		p.dropDeadline(deadlineKey(deadlineTest, vm))
	case events.ReverseReplicationStartedData:
		if !d.Resync {
			p.st.Reversing[vm] = true
		}
	case events.ReverseReplicationCompletedData, events.ProtectionDisabledData:
		delete(p.st.Reversing, vm)
	case events.PlanJobStartedData:
		p.st.Jobs[d.Job] = r.Aggregate.ID
	case events.PlanActionStartedData:
		p.setDeadline(deadline{Kind: deadlineScript, Start: r.Seq, At: r.Meta.At.Add(p.scriptDeadline(d.Timeout.D())),
			Plan: r.Aggregate.ID, Job: d.Job, Group: d.Group, Action: d.Action, DoneCmd: r.Meta.CommandID + "-done"})
	case events.PlanActionCompletedData:
		p.dropDeadline(deadlineKey(deadlineScript, r.Aggregate.ID+"/"+r.Meta.CommandID))
	case events.PlanJobCompletedData:
		p.endJob(d.Job)
	case events.PlanJobCancelledData:
		p.endJob(d.Job)
	}
}

// endJob forgets a plan job and its script deadlines, and stops its
// scripts still running.
func (p *PM) endJob(job string) {
	delete(p.st.Jobs, job)
	for key, d := range p.st.Deadlines {
		if d.Kind == deadlineScript && d.Job == job {
			p.dropDeadline(key)
		}
	}
	if cancel := p.scripts[job]; cancel != nil {
		cancel()
		delete(p.scripts, job)
	}
}

// dropFailover forgets the deadlines of vm's failover.
func (p *PM) dropFailover(vm string) {
	p.dropDeadline(deadlineKey(deadlineFailover, vm))
	p.dropDeadline(deadlineKey(deadlineSource, vm))
}

func (p *PM) setDeadline(d deadline) {
	p.st.Deadlines[d.key()] = d
	delete(p.fired, d.key())
}

func (p *PM) dropDeadline(key string) {
	delete(p.st.Deadlines, key)
	delete(p.fired, key)
}

// scriptDeadline is how long a script may go without a result before any
// process manager records it failed (its runner was lost): its timeout and
// a grace for the runner to record the result itself.
func (p *PM) scriptDeadline(timeout time.Duration) time.Duration {
	if timeout <= 0 {
		timeout = p.cfg.ScriptTimeout
	}
	return timeout + 5*p.cfg.Tick + time.Second
}

// react runs the reactions r triggers: the VM's, then its plan job's.
func (p *PM) react(ctx context.Context, r events.Record) error {
	err := p.reactOwn(ctx, r)
	if plan, ok := p.planOf(r); ok {
		if scope, moves := scopeOf(r); moves {
			err = errors.Join(err, p.reconcilePlan(ctx, plan, scope))
		}
	}
	return err
}

func (p *PM) reactOwn(ctx context.Context, r events.Record) error {
	vm := r.Aggregate.ID
	switch d := r.Data.(type) {
	case events.FailoverStartedData:
		if d.Mode == events.FailoverPlanned {
			return p.checkSource(ctx, vm, d.FromHost, r.Seq, p.since)
		}
	case events.HostUnreachableData:
		return p.hostLost(ctx, d.Name)
	case events.FailoverCommittedData:
		if d.Mode == events.FailoverPlanned {
			return p.startReverse(ctx, vm, r.Seq)
		}
	case events.RecoveryPointCreatedData:
		if p.reversing(vm) {
			return p.completeReverse(ctx, vm, r.Seq, d)
		}
	case events.ReplicationErrorData:
		if d.Code == agentproto.CodeVerifyFailed {
			return p.failVerify(ctx, vm, r.Seq, d)
		}
	}
	return nil
}

func (p *PM) reversing(vm string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st.Reversing[vm]
}

// planOf is the plan whose running job r concerns: a plan event, or an
// event of a plan job's VM operation.
func (p *PM) planOf(r events.Record) (string, bool) {
	if r.Aggregate.Kind == events.KindPlan {
		return r.Aggregate.ID, true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	plan, ok := p.st.Jobs[r.Meta.CorrelationID]
	return plan, ok
}

// reactVM decides over the VM's view and appends under cmdID (nothing when
// cmdID was appended before or decide returns no event), deciding again
// after a conflict.
func (p *PM) reactVM(ctx context.Context, name, cmdID string, decide func(v vmView) (decision, error)) error {
	agg := events.VMAgg(name)
	for range maxConflictRetries {
		cur, err := p.cache.load(ctx, agg)
		if err != nil {
			return fmt.Errorf("load %s: %w", agg, err)
		}
		if _, ok, err := handledBefore(cur.Marks, cmdID); ok || err != nil {
			return err
		}
		v := cur.View
		d, err := decide(v)
		if err != nil || len(d.evs) == 0 {
			return err
		}
		meta := events.Meta{At: time.Now().UTC(), CommandID: cmdID, CorrelationID: d.job, Actor: pmActor}
		if meta.CorrelationID == "" {
			meta.CorrelationID = cmdID
		}
		_, err = p.log.Append(ctx, agg, v.Version, meta, d.evs...)
		if errors.Is(err, events.ErrConflict) {
			continue
		}
		if err != nil {
			return fmt.Errorf("append to %s: %w", agg, err)
		}
		p.logger.Info().Str("vm", name).Str(logCommandID, cmdID).Str("event", string(d.evs[0].EventType())).Msg("process manager appended")
		return nil
	}
	return fmt.Errorf("%s kept changing after %d attempts: %w", agg, maxConflictRetries, events.ErrConflict)
}

func pmCommand(seq uint64, step string) string { return fmt.Sprintf("pm-%d-%s", seq, step) }

// timeout fails the (test) failover d names when it is still the VM's and
// has not ended, or records a script without a result as failed.
func (p *PM) timeout(ctx context.Context, d deadline) error {
	switch d.Kind {
	case deadlineScript:
		lost := events.PlanActionCompletedData{Job: d.Job, Group: d.Group, Action: d.Action,
			Error: "no result in time: the control plane running the script was lost"}
		_, err := p.appendPlanOnce(ctx, d.Plan, d.Job, d.DoneCmd, lost)
		return err
	case deadlineSource:
		return p.checkSource(ctx, d.VM, d.FromHost, d.Start, p.since)
	}
	reason := fmt.Sprintf("timeout: not serving on the recovery host within %s", p.cfg.FailoverTimeout)
	if d.Kind == deadlineTest {
		return p.reactVM(ctx, d.VM, pmCommand(d.Start, "test-timeout"), func(v vmView) (decision, error) {
			if v.Test.Seq != d.Start || v.TestState != events.TestInProgress {
				return decision{}, nil
			}
			return decided(v.Test.Job, events.FailoverFailedData{Mode: events.FailoverTest, Step: StepReady, Reason: reason})
		})
	}
	return p.reactVM(ctx, d.VM, pmCommand(d.Start, "timeout"), func(v vmView) (decision, error) {
		f := v.Failover
		if !failoverRunning(v, d.Start) {
			return decision{}, nil
		}
		step := StepReady
		if f.Data.Mode == events.FailoverPlanned && !f.Stopped {
			step = StepStopSource
		}
		return decided(f.Job, events.FailoverFailedData{Mode: f.Data.Mode, Step: step, Reason: reason})
	})
}

// failoverRunning: the failover started at seq is the VM's and in progress.
func failoverRunning(v vmView, seq uint64) bool {
	running := v.State == events.PlannedFailoverInProgress || v.State == events.UnplannedFailoverInProgress
	return running && v.Failover.Seq == seq && !v.Failover.Ended
}

// checkSource decides what the planned failover started at start does
// about its source host (decideSource, the control plane watching
// heartbeats since watching): nothing when it is reachable; when its
// reachability is not known yet, a deadline to look again once the wait is
// over; else fail at stop_source, unless the source reported vm_stopped.
func (p *PM) checkSource(ctx context.Context, vm, host string, start uint64, watching time.Time) error {
	vmCur, err := p.cache.load(ctx, events.VMAgg(vm))
	if err != nil {
		return fmt.Errorf("load vm %s: %w", vm, err)
	}
	if !failoverRunning(vmCur.View, start) || vmCur.View.Failover.Stopped {
		return nil
	}
	cur, err := p.cache.load(ctx, events.HostAgg(host))
	if err != nil {
		return fmt.Errorf("load host %s: %w", host, err)
	}
	now := time.Now()
	v := decideSource(cur.Host.Host, now, watching, p.cfg.UnreachableAfter)
	if !v.wait.IsZero() {
		p.mu.Lock()
		p.setDeadline(deadline{VM: vm, Kind: deadlineSource, Start: start, At: v.wait, Mode: events.FailoverPlanned, FromHost: host})
		p.mu.Unlock()
		return nil
	}
	if v.reason == "" {
		return nil
	}
	reason := fmt.Sprintf("source host %s %s: a planned failover needs the source (use unplanned_failover)", host, v.reason)
	return p.reactVM(ctx, vm, pmCommand(start, "unreachable"), func(v vmView) (decision, error) {
		if !failoverRunning(v, start) || v.Failover.Stopped {
			return decision{}, nil
		}
		return decided(v.Failover.Job, events.FailoverFailedData{Mode: events.FailoverPlanned, Step: StepStopSource, Reason: reason})
	})
}

// sourceVerdict is what a planned failover does about its source host:
// wait for a heartbeat until wait (when not zero), fail for reason (when
// not empty), or go on.
type sourceVerdict struct {
	wait   time.Time
	reason string
}

// decideSource: a planned failover needs its source host. A reachable one:
// go on. An unregistered one: fail. One whose reachability is not known
// (unknown: never heard since it registered; unreachable, as a control
// plane that has not watched for threshold knows it, its knowledge coming
// from before it started): wait for the first heartbeat until threshold
// has passed since watching (and, for unknown, since the registration),
// then fail. An unreachable one, the control plane having watched for
// threshold (watching zero: a host_unreachable just observed): fail.
func decideSource(h events.Host, now, watching time.Time, threshold time.Duration) sourceVerdict {
	if !h.Exists() {
		return sourceVerdict{reason: "is not registered"}
	}
	from := watching
	switch h.Reach() {
	case events.ReachabilityReachable:
		return sourceVerdict{}
	case events.ReachabilityUnknown:
		from = latest(watching, h.Registered)
	}
	if until := from.Add(threshold); now.Before(until) {
		return sourceVerdict{wait: until}
	}
	if h.Reach() == events.ReachabilityUnknown {
		return sourceVerdict{reason: fmt.Sprintf("was not heard from within %s", threshold)}
	}
	return sourceVerdict{reason: "is unreachable"}
}

// hostLost fails the planned failovers whose source host became unreachable
// before stopping the VM: the event is the observation, no wait.
func (p *PM) hostLost(ctx context.Context, host string) error {
	p.mu.Lock()
	var hit []deadline
	for _, d := range p.st.Deadlines {
		if d.Kind == deadlineFailover && d.Mode == events.FailoverPlanned && d.FromHost == host {
			hit = append(hit, d)
		}
	}
	p.mu.Unlock()
	var errs []error
	for _, d := range hit {
		errs = append(errs, p.checkSource(ctx, d.VM, host, d.Start, time.Time{}))
	}
	return errors.Join(errs...)
}

// startReverse starts reverse replication after a planned failover's
// commit (seq): no full copy, the old source's disk is the replica. It is a
// job of its own.
func (p *PM) startReverse(ctx context.Context, vm string, seq uint64) error {
	cmd := pmCommand(seq, "reverse")
	return p.reactVM(ctx, vm, cmd, func(v vmView) (decision, error) {
		if v.State != events.FailoverCommittedState || v.FailoverMode != events.FailoverPlanned || v.Commit.Seq != seq {
			return decision{}, nil
		}
		evs, err := decideVM(vmOpState{VM: v.VM}, events.OpReverse, vmRequest{VM: vm})
		return decision{evs: evs, job: cmd}, err
	})
}

// completeReverse: the first point applied in the new direction completes
// a reverse replication that needed no resync.
func (p *PM) completeReverse(ctx context.Context, vm string, seq uint64, rp events.RecoveryPointCreatedData) error {
	return p.reactVM(ctx, vm, pmCommand(seq, "reversed"), func(v vmView) (decision, error) {
		if v.State != events.ReverseReplicationState || v.ReverseResync || rp.Epoch != v.Epoch || seq < v.Reverse.Seq {
			return decision{}, nil
		}
		return decided(v.Reverse.Job, events.ReverseReplicationCompletedData{SentBytes: rp.Bytes})
	})
}

// failVerify: the recovery host found its replica different from the
// source's final state: the failover fails at verify.
func (p *PM) failVerify(ctx context.Context, vm string, seq uint64, e events.ReplicationErrorData) error {
	return p.reactVM(ctx, vm, pmCommand(seq, "verify"), func(v vmView) (decision, error) {
		if !failoverRunning(v, v.Failover.Seq) || seq < v.Failover.Seq || e.Host != v.Failover.Data.ToHost {
			return decision{}, nil
		}
		return decided(v.Failover.Job, events.FailoverFailedData{Mode: v.Failover.Data.Mode, Step: StepVerify, Reason: e.Message})
	})
}
