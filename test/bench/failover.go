package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/test/world"
)

// failoverSizes are the planned failover benchmark's sizes.
type failoverSizes struct {
	singles int   // VMs failed over one at a time (the 1-VM figure is their median)
	vms     int   // VMs of the plan
	disk    int64 // each VM's disk, random data
	written int64 // written through NBD to each VM right before the failover
}

func (e *benchEnv) failoverSizes() failoverSizes {
	switch e.sizes.name {
	case smokeSizes.name:
		return failoverSizes{singles: 1, vms: 3, disk: 2 * mib, written: 256 << 10}
	case quickSizes.name:
		return failoverSizes{singles: 3, vms: 20, disk: 4 * mib, written: 512 << 10}
	}
	return failoverSizes{singles: 3, vms: 50, disk: 8 * mib, written: 1 * mib}
}

// benchFailoverPlan is the recovery plan of the many-VM failover.
const benchFailoverPlan = "pfbench"

// benchFailover measures planned failovers with the real agents: of one VM
// at a time (a few, the figure is the median), then of a recovery plan of
// many VMs, each VM with a disk of random data
// and fresh writes not shipped yet when the failover starts (so the final
// cycle carries them). The time runs from the command to the VM failed
// over: FailoverCompleted recorded, the VM FailoverCommitPending and
// served at the recovery host. The recovery host's disk of every VM is
// then verified equal to the source's final bytes, and the VMs are
// committed (reverse replication starts by itself), then disabled, so they
// load the benchmarks that follow with nothing but their idle exports.
func benchFailover(ctx context.Context, e *benchEnv) ([]Figure, error) {
	fs := e.failoverSizes()
	singles, names := vmNames("pf", fs.singles), vmNames("pfp", fs.vms)
	// all protected at once: their initial replications overlap
	if err := protectVMs(ctx, e, append(slices.Clone(singles), names...), fs.disk, 20); err != nil {
		return nil, err
	}
	one, err := failoverSingles(ctx, e, fs, singles)
	if err != nil {
		return nil, err
	}
	many, err := failoverMany(ctx, e, fs, names)
	if err != nil {
		return []Figure{one.oneFigure(fs)}, err
	}
	return []Figure{one.oneFigure(fs), many.manyFigure(fs, one.took)}, retireFailedOver(ctx, e, singles, names)
}

func vmNames(prefix string, n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s%02d", prefix, i)
	}
	return names
}

// failoverRun is what one measured planned failover did.
type failoverRun struct {
	took    time.Duration // command to the last VM failed over
	job     time.Duration // command to the plan job completed (plans only)
	started time.Duration // command to the last VM's failover_started (plans only)
	cycle   time.Duration // the 1-VM baseline: an ordinary cycle of the same writes
	shipped int           // VMs whose writes were (partly) in a point before the command
	vms     int
	each    []failoverRun // the single-VM runs the median was taken of
}

func (r failoverRun) oneFigure(fs failoverSizes) Figure {
	runs := make([]string, len(r.each))
	for i, x := range r.each {
		runs[i] = fmt.Sprintf("%s (cycle %s)", x.took.Round(time.Millisecond), x.cycle.Round(time.Millisecond))
	}
	f := Figure{Name: "planned_failover_1vm", Value: r.took.Seconds(), Unit: "s", Baseline: r.cycle.Seconds(),
		BaselineName: "delta cycle of the same writes s", Ratio: r.took.Seconds() / r.cycle.Seconds(),
		Target: "none (reported; ratio = value/baseline, lower is better)", Meets: true,
		Note: fmt.Sprintf("median of %d VMs failed over one at a time: %s; %d MiB disks of random data, %d KiB written through NBD right before (%s); "+
			"planned_failover to FailoverCommitPending; baseline: an ordinary cycle of the same writes on the same VM just before, closed to recorded; "+
			"recovery host's disks and replicas verified equal to the sources",
			len(r.each), strings.Join(runs, ", "), fs.disk/mib, fs.written>>10, r.shippedNote())}
	return f
}

func (r failoverRun) shippedNote() string {
	if r.shipped == 0 {
		return "none of it in a point before the command"
	}
	return fmt.Sprintf("in %d of %d VMs a cycle closed during the writes and took part of them before the command", r.shipped, r.vms)
}

func (r failoverRun) manyFigure(fs failoverSizes, one time.Duration) Figure {
	base := float64(r.vms) * one.Seconds()
	f := Figure{Name: "planned_failover_50vms", Value: r.took.Seconds(), Unit: "s", Baseline: base,
		BaselineName: fmt.Sprintf("%d x 1-VM failover s", r.vms), Ratio: base / r.took.Seconds(),
		Target: "none (reported; ratio = parallel speed-up, higher is better)", Meets: true,
		Note: fmt.Sprintf("%d VMs in one group of plan %s, %d MiB disks of random data, %d KiB written to each right before (%s); "+
			"plan planned_failover to every VM FailoverCommitPending; the last VM's failover started at %s, the plan job completed at %s; "+
			"every recovery host disk and replica verified equal to its source",
			r.vms, benchFailoverPlan, fs.disk/mib, fs.written>>10, r.shippedNote(), r.started.Round(time.Millisecond), r.job.Round(time.Millisecond))}
	return f
}

// failoverSingles fails the protected VMs over one at a time and takes the
// medians of their failover and baseline cycle times.
func failoverSingles(ctx context.Context, e *benchEnv, fs failoverSizes, names []string) (failoverRun, error) {
	run := failoverRun{vms: len(names)}
	for _, vm := range names {
		one, err := failoverOne(ctx, e, fs, vm)
		if err != nil {
			return run, err
		}
		run.each, run.shipped = append(run.each, one), run.shipped+one.shipped
	}
	run.took = median(run.each, func(r failoverRun) time.Duration { return r.took })
	run.cycle = median(run.each, func(r failoverRun) time.Duration { return r.cycle })
	return run, nil
}

// median is the median of f over the runs (the upper one of an even count).
func median(runs []failoverRun, f func(failoverRun) time.Duration) time.Duration {
	ds := make([]time.Duration, len(runs))
	for i, r := range runs {
		ds[i] = f(r)
	}
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// failoverOne measures an ordinary cycle of the writes, then the planned
// failover of one protected VM with the same amount of writes pending, and
// verifies its disks.
func failoverOne(ctx context.Context, e *benchEnv, fs failoverSizes, vm string) (failoverRun, error) {
	run := failoverRun{vms: 1}
	cycle, err := cycleOfWrites(ctx, e, vm, fs.written)
	if err != nil {
		return run, err
	}
	run.cycle = cycle
	// the point of that cycle was just recorded: the next cycle is open
	writeStart := time.Now()
	if err := writeBlocks(ctx, e, vm, fs.written, 30); err != nil {
		return run, err
	}
	start := time.Now()
	if err := e.Command(ctx, "sr.cmd.vm.planned_failover", map[string]any{"vm": vm}); err != nil {
		return run, err
	}
	if run.took, err = failedOver(ctx, e, vm, start, 5*time.Minute); err != nil {
		return run, err
	}
	if run.shipped, err = shippedBefore(ctx, e, map[string]time.Time{vm: writeStart}, start); err != nil {
		return run, err
	}
	return run, verifyFailedOver(e, vm)
}

// failoverMany measures the planned failover of a plan of the protected
// VMs names.
func failoverMany(ctx context.Context, e *benchEnv, fs failoverSizes, names []string) (failoverRun, error) {
	run := failoverRun{vms: len(names)}
	if err := e.Command(ctx, "sr.cmd.plan.create", map[string]any{"name": benchFailoverPlan,
		"groups": []events.PlanGroup{{VMs: names}}}); err != nil {
		return run, err
	}
	writeStarts, err := writeAllFresh(ctx, e, names, fs.written)
	if err != nil {
		return run, err
	}
	start := time.Now()
	err = e.Command(ctx, "sr.cmd.plan.planned_failover", map[string]any{"plan": benchFailoverPlan})
	if err != nil {
		return run, err
	}
	if run.job, err = planJobDone(ctx, e, benchFailoverPlan, "planned_failover", start, 10*time.Minute); err != nil {
		return run, err
	}
	for _, vm := range names {
		took, err := failedOver(ctx, e, vm, start, time.Minute)
		if err != nil {
			return run, err
		}
		run.took = max(run.took, took)
	}
	if run.started, err = lastStarted(ctx, e, names, start); err != nil {
		return run, err
	}
	if run.shipped, err = shippedBefore(ctx, e, writeStarts, start); err != nil {
		return run, err
	}
	return run, world.Parallel(names, func(vm string) error { return verifyFailedOver(e, vm) })
}

// protectVMs creates the VMs with disks of random data and protects them.
func protectVMs(ctx context.Context, e *benchEnv, names []string, size int64, seed byte) error {
	for i, vm := range names {
		if err := writeRandomFile(e.sourceImage(vm), size, seed+byte(i)); err != nil {
			return err
		}
		if err := e.createVM(ctx, vm, size); err != nil {
			return err
		}
		if err := e.Enable(ctx, vm); err != nil {
			return err
		}
	}
	for _, vm := range names {
		if _, err := e.WaitProtected(ctx, vm, 10*time.Minute); err != nil {
			return err
		}
	}
	return nil
}

// cycleOfWrites writes n bytes right after a cycle closed and returns how
// long the cycle holding them took from its close to its point recorded.
func cycleOfWrites(ctx context.Context, e *benchEnv, vm string, n int64) (time.Duration, error) {
	if err := waitFreshPoint(ctx, e, vm); err != nil {
		return 0, err
	}
	writeStart := time.Now()
	if err := writeBlocks(ctx, e, vm, n, 10); err != nil {
		return 0, err
	}
	writeEnd := time.Now()
	if _, err := e.WaitVM(ctx, vm, 5*time.Minute, "the recovery point of the writes", func(v events.VM) bool {
		rp, ok := v.RecoveryPoint("latest")
		return ok && rp.Time.After(writeEnd)
	}); err != nil {
		return 0, err
	}
	var d deltaRun
	return d.took, d.measure(ctx, e, vm, writeStart, writeEnd)
}

// writeFresh waits for a new recovery point of the VM (a cycle just
// closed), then writes n bytes: they sit in the open cycle. It returns
// when the writes began.
func writeFresh(ctx context.Context, e *benchEnv, vm string, n int64, seed byte) (time.Time, error) {
	if err := waitFreshPoint(ctx, e, vm); err != nil {
		return time.Time{}, err
	}
	start := time.Now()
	return start, writeBlocks(ctx, e, vm, n, seed)
}

// writeAllFresh runs writeFresh on every VM at once and returns when each
// one's writes began.
func writeAllFresh(ctx context.Context, e *benchEnv, names []string, n int64) (map[string]time.Time, error) {
	var mu sync.Mutex
	starts := map[string]time.Time{}
	err := world.Parallel(names, func(vm string) error {
		t, err := writeFresh(ctx, e, vm, n, byte(50+len(vm)))
		mu.Lock()
		defer mu.Unlock()
		starts[vm] = t
		return err
	})
	return starts, err
}

// waitFreshPoint waits until the VM gets a recovery point newer than the
// one it has now.
func waitFreshPoint(ctx context.Context, e *benchEnv, vm string) error {
	last, err := e.VM(ctx, vm)
	if err != nil {
		return err
	}
	prev, _ := last.RecoveryPoint("latest")
	_, err = e.WaitVM(ctx, vm, 2*time.Minute, "a new recovery point", func(v events.VM) bool {
		rp, ok := v.RecoveryPoint("latest")
		return ok && rp.Time.After(prev.Time)
	})
	return err
}

// writeBlocks writes n bytes of random 64 KiB blocks at random offsets of
// the VM's disk through its NBD export, flushed.
func writeBlocks(ctx context.Context, e *benchEnv, vm string, n int64, seed byte) error {
	const block = 64 << 10
	v, err := e.VM(ctx, vm)
	if err != nil {
		return err
	}
	if len(v.Disks) == 0 {
		return fmt.Errorf("vm %s has no disk", vm)
	}
	offs := randomBlocks(rand.New(rand.NewPCG(uint64(seed), 11)), v.Disks[0].Size, block, max(int(n/block), 1))
	data := make([]byte, int64(len(offs))*block)
	fillRandom(data, seed)
	c, err := e.dialDisk(ctx, vm)
	if err != nil {
		return err
	}
	err = c.writes(offs, func(i int) []byte { return data[int64(i)*block : int64(i+1)*block] }, 16)
	return errors.Join(err, c.Close())
}

// failedOver waits until the VM's planned failover ended and returns the
// time from start to its FailoverCompleted event.
func failedOver(ctx context.Context, e *benchEnv, vm string, start time.Time, d time.Duration) (time.Duration, error) {
	v, err := e.WaitVM(ctx, vm, d, "planned failover ended", func(v events.VM) bool {
		return v.State == events.FailoverCommitPending || v.State == events.PlannedFailoverFailed
	})
	if err != nil {
		return 0, err
	}
	recs, err := e.ControlPlane().Log().Load(ctx, events.VMAgg(vm))
	if err != nil {
		return 0, err
	}
	for i := len(recs) - 1; i >= 0; i-- {
		switch d := recs[i].Data.(type) {
		case events.FailoverFailedData:
			return 0, fmt.Errorf("vm %s: planned failover failed at %s: %s", vm, d.Step, d.Reason)
		case events.FailoverCompletedData:
			if v.State == events.FailoverCommitPending {
				return recs[i].Meta.At.Sub(start), nil
			}
		}
	}
	return 0, fmt.Errorf("vm %s: %s without a failover_completed event", vm, v.State)
}

// lastStarted is the time from start to the last failover_started event of
// the VMs.
func lastStarted(ctx context.Context, e *benchEnv, names []string, start time.Time) (time.Duration, error) {
	var last time.Duration
	for _, vm := range names {
		recs, err := e.ControlPlane().Log().Load(ctx, events.VMAgg(vm))
		if err != nil {
			return 0, err
		}
		for _, r := range recs {
			if _, ok := r.Data.(events.FailoverStartedData); ok && r.Meta.At.After(start) {
				last = max(last, r.Meta.At.Sub(start))
			}
		}
	}
	return last, nil
}

// shippedBefore counts the VMs with a recovery point closed after their
// writes began (from) and before the failover command (to): their writes
// were (partly) shipped before the failover.
func shippedBefore(ctx context.Context, e *benchEnv, froms map[string]time.Time, to time.Time) (int, error) {
	n := 0
	for vm, from := range froms {
		recs, err := e.ControlPlane().Log().Load(ctx, events.VMAgg(vm))
		if err != nil {
			return 0, err
		}
		for _, r := range recs {
			if rp, ok := r.Data.(events.RecoveryPointCreatedData); ok && rp.Time.After(from) && rp.Time.Before(to) {
				n++
				break
			}
		}
	}
	return n, nil
}

// promotedImage is the VM's disk served by the recovery host after a
// failover.
func (e *benchEnv) promotedImage(vm string) string {
	return e.SourceImage(benchRecovery, vm, benchDisk)
}

// verifyFailedOver checks that the disk the recovery host serves, and its
// replica, equal the source's disk as the failover stopped it.
func verifyFailedOver(e *benchEnv, vm string) error {
	if err := world.SameFiles(e.sourceImage(vm), e.promotedImage(vm)); err != nil {
		return fmt.Errorf("vm %s: disk at the recovery host after the failover: %w", vm, err)
	}
	if err := world.SameFiles(e.sourceImage(vm), e.replicaImage(vm)); err != nil {
		return fmt.Errorf("vm %s: replica after the failover: %w", vm, err)
	}
	return nil
}

// retireFailedOver commits the failovers of the single VMs one by one and
// of the plan's VMs by the plan, waits for the reverse replications,
// disables every VM and deletes the plan.
func retireFailedOver(ctx context.Context, e *benchEnv, singles, planned []string) error {
	err := retireVMs(ctx, e, append(slices.Clone(singles), planned...), func() error {
		for _, vm := range singles {
			if err := e.Command(ctx, "sr.cmd.vm.commit", map[string]any{"vm": vm}); err != nil {
				return err
			}
		}
		start := time.Now()
		if err := e.Command(ctx, "sr.cmd.plan.commit", map[string]any{"plan": benchFailoverPlan}); err != nil {
			return err
		}
		_, err := planJobDone(ctx, e, benchFailoverPlan, "commit", start, 5*time.Minute)
		return err
	})
	if err != nil {
		return err
	}
	return e.Command(ctx, "sr.cmd.plan.delete", map[string]any{"plan": benchFailoverPlan})
}

// retireVMs commits the failed-over VMs (commit), waits until the reverse
// replication that follows made them Protected in the new direction, then
// disables them: they stay on the recovery host, unprotected and idle.
func retireVMs(ctx context.Context, e *benchEnv, names []string, commit func() error) error {
	if err := commit(); err != nil {
		return err
	}
	for _, vm := range names {
		if _, err := e.WaitVM(ctx, vm, 5*time.Minute, "protected in the new direction", func(v events.VM) bool {
			return v.State == events.Protected
		}); err != nil {
			return err
		}
		if err := e.Command(ctx, "sr.cmd.vm.disable", map[string]any{"vm": vm}); err != nil {
			return err
		}
	}
	for _, vm := range names {
		if _, err := e.WaitVM(ctx, vm, 5*time.Minute, "unprotected", func(v events.VM) bool {
			return v.State == events.Unprotected
		}); err != nil {
			return err
		}
	}
	return nil
}

// planJobDone waits for the plan's latest job of operation op to end and
// returns the time from start to its end; a job that did not succeed is an
// error.
func planJobDone(ctx context.Context, e *benchEnv, plan, op string, start time.Time, d time.Duration) (time.Duration, error) {
	deadline := time.Now().Add(d)
	for {
		recs, err := e.ControlPlane().Log().Load(ctx, events.PlanAgg(plan))
		if err != nil {
			return 0, err
		}
		if done, ok := jobCompleted(recs, op); ok {
			data := done.Data.(events.PlanJobCompletedData)
			if data.State != events.JobSucceeded {
				return 0, fmt.Errorf("plan %s: %s job %s: %v", plan, op, data.State, data.Errors)
			}
			return done.Meta.At.Sub(start), nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("plan %s: %s job not done within %s", plan, op, d)
		}
		if err := world.Sleep(ctx, 50*time.Millisecond); err != nil { // polling the log, bounded by the deadline
			return 0, err
		}
	}
}

// jobCompleted finds the completion of the last job of operation op.
func jobCompleted(recs []events.Record, op string) (events.Record, bool) {
	job := ""
	var done events.Record
	found := false
	for _, r := range recs {
		switch d := r.Data.(type) {
		case events.PlanJobStartedData:
			if d.Operation == op {
				job, found = d.Job, false
			}
		case events.PlanJobCompletedData:
			if job != "" && d.Job == job {
				done, found = r, true
			}
		}
	}
	return done, found
}
