package handlers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/siterecovery/siterecovery/events"
)

// Plan actions named in plan_action_started/completed besides the VM
// operations.
const (
	ActionPreScript  = "pre_script"
	ActionPostScript = "post_script"
)

// planVMOps maps a plan job's operation to the VM operation of each VM.
var planVMOps = map[string]events.Operation{
	planTestFailover: events.OpTestFailover, planTestCleanup: events.OpTestCleanup,
	planPlannedFailover: events.OpPlannedFailover, planUnplannedFailover: events.OpUnplannedFailover,
	planCommit: events.OpCommit, planReverse: events.OpReverse,
}

type actionKey struct {
	Group  int
	Action string
	Target string
}

// planRun is a plan and its running job, folded from the plan's history.
type planRun struct {
	plan    events.Plan
	jobSeq  uint64
	op      string
	point   string
	group   int // -1: no group started
	started map[actionKey]bool
	done    map[actionKey]string // error, "" for success
	errs    []string
	susp    map[int]bool
	resumed map[int]bool
	last    int // group of the last plan_suspended
}

func foldPlanRun(recs []events.Record) planRun {
	run := planRun{group: -1}
	for _, r := range recs {
		run.plan.Apply(r)
		run.apply(r)
	}
	return run
}

func (run *planRun) apply(r events.Record) {
	switch d := r.Data.(type) {
	case events.PlanJobStartedData:
		*run = planRun{plan: run.plan, jobSeq: r.Seq, op: d.Operation, point: d.RecoveryPoint, group: -1,
			started: map[actionKey]bool{}, done: map[actionKey]string{}, susp: map[int]bool{}, resumed: map[int]bool{}}
	case events.PlanGroupStartedData:
		run.group = d.Group
	case events.PlanActionStartedData:
		run.started[actionKey{d.Group, d.Action, d.Target}] = true
	case events.PlanActionCompletedData:
		run.done[actionKey{d.Group, d.Action, d.Target}] = d.Error
		if d.Error != "" {
			run.errs = append(run.errs, fmt.Sprintf("group %d %s %s: %s", d.Group+1, d.Action, d.Target, d.Error))
		}
	case events.PlanSuspendedData:
		run.susp[d.Group], run.last = true, d.Group
	case events.PlanResumedData:
		run.resumed[run.last] = true
	}
}

// stopOnError: every plan operation but an unplanned failover stops at the
// first error; an unplanned one goes on and reports.
func (run *planRun) stopOnError() bool { return run.op != planUnplannedFailover }

func (run *planRun) failed(keys ...actionKey) bool {
	for _, k := range keys {
		if e, ok := run.done[k]; ok && e != "" {
			return true
		}
	}
	return false
}

func (run *planRun) cmd(step string) string { return pmCommand(run.jobSeq, step) }

// planScope limits which VMs of the running group a reconcile loads: all
// (the zero value), only vm (an event of that VM's operation), or none
// (the outcome of one was just recorded; the others are looked at when
// their own events come, or by the periodic sweep).
type planScope struct {
	vm    string
	noVMs bool
}

func (sc planScope) covers(vm string) bool {
	return !sc.noVMs && (sc.vm == "" || sc.vm == vm)
}

// planEnds are the VM event types that can end a plan job's VM operation.
var planEnds = map[events.Type]bool{
	events.FailoverCompleted: true, events.FailoverFailed: true, events.TestFailoverCompleted: true,
	events.TestFailoverCleanedUp: true, events.FailoverCommitted: true, events.ReverseReplicationCompleted: true,
}

// scopeOf is the scope of the reconcile r triggers; false when r cannot
// move its plan job (a VM event that ends no operation).
func scopeOf(r events.Record) (planScope, bool) {
	if r.Aggregate.Kind != events.KindPlan {
		return planScope{vm: r.Aggregate.ID}, planEnds[r.Type()]
	}
	if d, ok := r.Data.(events.PlanActionCompletedData); ok && d.Target != "" {
		return planScope{noVMs: true}, true
	}
	return planScope{}, true
}

// reconcilePlan takes the plan's running job one step further, if a step
// is due: each step is appended under a command id made of the job's start
// sequence and the step, so several process managers append it once.
func (p *PM) reconcilePlan(ctx context.Context, name string, scope planScope) error {
	cur, err := p.cache.load(ctx, events.PlanAgg(name))
	if err != nil {
		return fmt.Errorf("load plan %s: %w", name, err)
	}
	run := cur.Run
	if !run.plan.Exists() || run.plan.Job == "" || run.plan.JobState == events.JobSuspended || run.jobSeq == 0 {
		return nil
	}
	if run.group < 0 {
		return p.appendPlan(ctx, name, run, run.cmd("g0"), events.PlanGroupStartedData{Job: run.plan.Job, Group: 0})
	}
	return p.reconcileGroup(ctx, name, run, scope)
}

func (p *PM) reconcileGroup(ctx context.Context, name string, run planRun, scope planScope) error {
	g := run.group
	grp := run.plan.Groups[g]
	pre := actionKey{g, ActionPreScript, ""}
	post := actionKey{g, ActionPostScript, ""}
	if grp.PreScript != "" {
		if waiting, err := p.script(ctx, name, run, pre, grp.PreScript, grp.ScriptTimeout.D()); waiting || err != nil {
			return err
		}
	}
	if run.stopOnError() && run.failed(pre) {
		return p.completePlan(ctx, name, run)
	}
	if pending, err := p.runGroupVMs(ctx, name, run, g, scope); pending || err != nil {
		return err
	}
	if run.stopOnError() && len(run.errs) > 0 {
		return p.completePlan(ctx, name, run)
	}
	if grp.PostScript != "" {
		if waiting, err := p.script(ctx, name, run, post, grp.PostScript, grp.ScriptTimeout.D()); waiting || err != nil {
			return err
		}
	}
	if run.stopOnError() && run.failed(post) {
		return p.completePlan(ctx, name, run)
	}
	if grp.ManualAction != "" && !run.resumed[g] {
		if run.susp[g] {
			return nil
		}
		return p.appendPlan(ctx, name, run, run.cmd(fmt.Sprintf("manual%d", g)),
			events.PlanSuspendedData{Job: run.plan.Job, Group: g, Text: grp.ManualAction})
	}
	if g+1 < len(run.plan.Groups) {
		return p.appendPlan(ctx, name, run, run.cmd(fmt.Sprintf("g%d", g+1)), events.PlanGroupStartedData{Job: run.plan.Job, Group: g + 1})
	}
	return p.completePlan(ctx, name, run)
}

func (p *PM) completePlan(ctx context.Context, name string, run planRun) error {
	state := events.JobSucceeded
	if len(run.errs) > 0 {
		state = events.JobFailed
	}
	return p.appendPlan(ctx, name, run, run.cmd("end"), events.PlanJobCompletedData{Job: run.plan.Job, State: state, Errors: run.errs})
}

// appendPlan appends ev to the plan under cmdID while run's job is still the
// plan's running job.
func (p *PM) appendPlan(ctx context.Context, name string, run planRun, cmdID string, ev events.Data) error {
	_, err := p.appendPlanOnce(ctx, name, run.plan.Job, cmdID, ev)
	return err
}

// appendPlanOnce is appendPlan that reports whether this call appended ev
// (false: appended before, by this or another process manager, or the job
// is no longer running).
func (p *PM) appendPlanOnce(ctx context.Context, name, job, cmdID string, ev events.Data) (bool, error) {
	agg := events.PlanAgg(name)
	for range maxConflictRetries {
		cur, err := p.cache.load(ctx, agg)
		if err != nil {
			return false, fmt.Errorf("load %s: %w", agg, err)
		}
		if _, ok, err := handledBefore(cur.Marks, cmdID); ok || err != nil {
			return false, err
		}
		if cur.Run.plan.Job != job {
			return false, nil
		}
		meta := events.Meta{At: time.Now().UTC(), CommandID: cmdID, CorrelationID: job, Actor: pmActor}
		res, err := p.log.Append(ctx, agg, cur.Seq, meta, ev)
		if errors.Is(err, events.ErrConflict) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("append to %s: %w", agg, err)
		}
		return !res.Duplicate, nil
	}
	return false, fmt.Errorf("%s kept changing after %d attempts: %w", agg, maxConflictRetries, events.ErrConflict)
}

// planVMParallel bounds how many VMs of a group a reconcile issues or looks
// at at once.
const planVMParallel = 16

// runGroupVMs issues the group's VM operations not issued yet and records
// the outcome of those that ended. The VMs of a group go in parallel (at
// most planVMParallel at once; each VM is its own aggregate); their
// outcomes are then appended to the plan one after another, in the group's
// order. pending is true while the outcome of one is not in run.
func (p *PM) runGroupVMs(ctx context.Context, name string, run planRun, g int, scope planScope) (pending bool, err error) {
	op := planVMOps[run.op]
	var keys []actionKey
	for _, vm := range run.plan.Groups[g].VMs {
		key := actionKey{g, string(op), vm}
		if _, ok := run.done[key]; ok {
			continue
		}
		// Pending even when it ends now: run does not hold its outcome yet;
		// the plan_action_completed appended reconciles the plan again.
		pending = true
		if scope.covers(vm) {
			keys = append(keys, key)
		}
	}
	outs := make([]planVMOutcome, len(keys))
	sem := make(chan struct{}, planVMParallel)
	var wg sync.WaitGroup
	for i, key := range keys {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			outs[i] = p.runPlanVM(ctx, run, key)
		})
	}
	wg.Wait()
	var errs []error
	for i, out := range outs {
		if out.err != nil {
			errs = append(errs, out.err)
			continue
		}
		if out.ended {
			issue := run.cmd("vm-" + keys[i].Target)
			if err := p.appendPlan(ctx, name, run, issue+"-done", actionDone(run, keys[i], out.errText)); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return pending, errors.Join(errs...)
}

// planVMOutcome is what runPlanVM found: ended with errText ("" for
// success; a refusal when the VM refused the operation), or err.
type planVMOutcome struct {
	ended   bool
	errText string
	err     error
}

// runPlanVM issues the VM's operation under the plan's job once, and says
// whether it ended (refused, failed or done) so the caller records it.
func (p *PM) runPlanVM(ctx context.Context, run planRun, key actionKey) planVMOutcome {
	cur, err := p.cache.load(ctx, events.VMAgg(key.Target))
	if err != nil {
		return planVMOutcome{err: fmt.Errorf("load vm %s: %w", key.Target, err)}
	}
	issue := run.cmd("vm-" + key.Target)
	seq := issuedAt(cur.Marks, issue)
	if seq == 0 {
		refusal, err := p.issueVM(ctx, run, key, issue)
		return planVMOutcome{ended: err == nil && refusal != "", errText: refusal, err: err}
	}
	outcome, ended := vmOutcome(cur.Marks, seq, run.plan.Job, events.Operation(key.Action))
	return planVMOutcome{ended: ended, errText: outcome}
}

func actionDone(run planRun, key actionKey, errText string) events.Data {
	return events.PlanActionCompletedData{Job: run.plan.Job, Group: key.Group, Action: key.Action, Target: key.Target, Error: errText}
}

// issueVM decides the VM's operation as an operator's command would, and
// appends it under the plan's job. refusal is the VM's refusal (its state,
// no recovery point), "" when the operation was issued.
func (p *PM) issueVM(ctx context.Context, run planRun, key actionKey, cmdID string) (refusal string, err error) {
	op := events.Operation(key.Action)
	req := vmRequest{VM: key.Target}
	if op == events.OpUnplannedFailover || op == events.OpTestFailover {
		req.RecoveryPoint = run.point
	}
	err = p.reactVM(ctx, key.Target, cmdID, func(v vmView) (decision, error) {
		refusal = ""
		evs, derr := decideVM(vmOpState{VM: v.VM}, op, req)
		if derr != nil {
			refusal = derr.Error()
			return decision{}, nil
		}
		return decided(run.plan.Job, evs...)
	})
	return refusal, err
}

// issuedAt is the sequence of the first event cmdID appended to the VM
// (recs: its history or Marks), 0 if none.
func issuedAt(recs []events.Record, cmdID string) uint64 {
	for _, r := range recs {
		if r.Meta.CommandID == cmdID {
			return r.Seq
		}
	}
	return 0
}

// vmOutcome finds, after seq, the event of job that ends op: its error
// ("" for success) and whether it ended. recs is the VM's history or Marks
// (the events that end an operation are never routine).
func vmOutcome(recs []events.Record, seq uint64, job string, op events.Operation) (string, bool) {
	for _, r := range recs {
		if r.Seq < seq || r.Meta.CorrelationID != job {
			continue
		}
		if errText, ended := endsOp(r, op); ended {
			return errText, true
		}
	}
	return "", false
}

func endsOp(r events.Record, op events.Operation) (string, bool) {
	if f, ok := r.Data.(events.FailoverFailedData); ok {
		test := f.Mode == events.FailoverTest
		if test == (op == events.OpTestFailover) {
			return fmt.Sprintf("%s failover failed at %s: %s", f.Mode, f.Step, f.Reason), true
		}
	}
	var want events.Type
	switch op {
	case events.OpTestFailover:
		want = events.TestFailoverCompleted
	case events.OpTestCleanup:
		want = events.TestFailoverCleanedUp
	case events.OpPlannedFailover, events.OpUnplannedFailover:
		want = events.FailoverCompleted
	case events.OpCommit:
		want = events.FailoverCommitted
	case events.OpReverse:
		want = events.ReverseReplicationCompleted
	}
	return "", r.Type() == want
}
