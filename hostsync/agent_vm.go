package hostsync

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/agentproto"
)

// reconcileEvery is how often a VM controller looks at its VM even when
// nothing changed (cycle closes, re-sends, reports that failed).
const reconcileEvery = 200 * time.Millisecond

// reportRetry is how long a report that did not take effect waits before it
// is sent again.
const reportRetry = 3 * time.Second

// vmCtl does this host's part for one VM: the source side (disks, NBD
// export, initial replication, shipping) and the recovery side (replica,
// consumer, apply, points). One goroutine (run) owns the sides; update and
// acked hand it the latest VM state and acknowledgements.
type vmCtl struct {
	a      *Agent
	name   string
	logger zerolog.Logger
	kick   chan struct{}

	mu        sync.Mutex
	vm        events.VM
	enableSeq uint64
	ack       cycleAck

	// owned by run, then by close
	src *sourceSide
	rcv *recoverySide
	fo  failoverSide // failover*.go

	repMu   sync.Mutex
	reports map[string]time.Time // report key → last sent
}

func newVMCtl(a *Agent, name string) *vmCtl {
	return &vmCtl{
		a: a, name: name, kick: make(chan struct{}, 1), reports: map[string]time.Time{},
		logger: a.logger.With().Str("vm", name).Logger(),
	}
}

// update hands the controller the VM as folded from the log.
func (c *vmCtl) update(vm events.VM, enableSeq uint64) {
	c.mu.Lock()
	c.vm, c.enableSeq = vm, enableSeq
	c.mu.Unlock()
	c.poke()
}

func (c *vmCtl) enableSeqNow() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.enableSeq
}

// acked records a recovery host's acknowledgement.
func (c *vmCtl) acked(ack cycleAck) {
	c.mu.Lock()
	if ack.Enable != c.ack.Enable || ack.Epoch > c.ack.Epoch || (ack.Epoch == c.ack.Epoch && ack.Seq > c.ack.Seq) {
		c.ack = ack
	}
	c.mu.Unlock()
	c.poke()
}

func (c *vmCtl) poke() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *vmCtl) snapshot() (events.VM, uint64, cycleAck) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.vm, c.enableSeq, c.ack
}

func (c *vmCtl) run(ctx context.Context) {
	defer c.a.wg.Done()
	t := time.NewTicker(reconcileEvery)
	defer t.Stop()
	for ctx.Err() == nil {
		c.reconcile(ctx)
		select {
		case <-ctx.Done():
		case <-c.kick:
		case <-t.C:
		}
	}
}

func (c *vmCtl) reconcile(ctx context.Context) {
	vm, enableSeq, ack := c.snapshot()
	if c.failoverOwns(ctx, vm, enableSeq, ack) {
		return
	}
	if err := c.reconcileSource(ctx, vm, enableSeq, ack); err != nil && ctx.Err() == nil {
		c.warnOnce("source", err)
	}
	if err := c.reconcileRecovery(ctx, vm, enableSeq); err != nil && ctx.Err() == nil {
		c.warnOnce("recovery", err)
	}
}

// warnOnce logs an error of a side at most every reportRetry.
func (c *vmCtl) warnOnce(side string, err error) {
	if c.due("warn:"+side+":"+err.Error(), 10*time.Second) {
		c.logger.Warn().Err(err).Str("side", side).Msg("vm replication")
	}
}

// due says whether the action named key last happened longer than every
// ago, and if so records it as happening now.
func (c *vmCtl) due(key string, every time.Duration) bool {
	c.repMu.Lock()
	defer c.repMu.Unlock()
	now := time.Now()
	if last, ok := c.reports[key]; ok && now.Sub(last) < every {
		return false
	}
	c.reports[key] = now
	return true
}

// reportOnce sends a report unless the same key was sent within
// reportRetry; callers report levels (what the VM lacks), so a lost report
// is sent again on a later pass.
func (c *vmCtl) reportOnce(ctx context.Context, key, verb string, body any) {
	if !c.due("report:"+key, reportRetry) {
		return
	}
	if err := c.a.rep.report(ctx, verb, body); err != nil && ctx.Err() == nil {
		var re *ReportError
		lvl := zerolog.DebugLevel
		if errors.As(err, &re) {
			lvl = zerolog.WarnLevel
		}
		c.logger.WithLevel(lvl).Err(err).Str("verb", verb).Msg("report")
	}
}

// reportError reports an error of the VM's replication (at most every 10 s
// per code).
func (c *vmCtl) reportError(ctx context.Context, code string, err error) {
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return // the agent is stopping: nothing failed
	}
	if !c.due("error:"+code, 10*time.Second) {
		return
	}
	c.logger.Warn().Err(err).Str("code", code).Msg("replication error")
	body := agentproto.ErrorReport{VM: c.name, Code: code, Message: err.Error()}
	if rerr := c.a.rep.report(ctx, agentproto.VerbError, body); rerr != nil && ctx.Err() == nil {
		c.logger.Debug().Err(rerr).Msg("report error")
	}
}

// provisioned says whether the VM already records the image.
func provisioned(vm events.VM, disk string, want events.DiskImage) bool {
	return slices.Contains(vm.Images[disk], want)
}

// close stops the VM's work and closes its disks and replica. The agent's
// context is cancelled and run has returned.
func (c *vmCtl) close() error {
	errs := []error{c.closeFailover()}
	if c.rcv != nil {
		errs = append(errs, c.rcv.close())
	}
	if c.src != nil {
		errs = append(errs, c.src.close(c.a.nbd))
	}
	return errors.Join(errs...)
}

// shipStates are the states in which the source replicates.
var shipStates = []events.ProtectionState{
	events.EnablingProtection, events.InitialReplication, events.Protected, events.Paused,
	events.PlannedFailoverInProgress, events.ReverseReplicationState,
}

// receiveStates are the states in which the recovery host applies cycles.
var receiveStates = []events.ProtectionState{
	events.EnablingProtection, events.InitialReplication, events.Protected, events.Paused,
	events.ResyncRequiredState, events.Resynchronizing, events.PlannedFailoverInProgress,
	events.PlannedFailoverFailed, events.ReverseReplicationState,
}
