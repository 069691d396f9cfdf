package hostsync

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/agentproto"
	"github.com/siterecovery/siterecovery/hostsync/replica"
)

// The agent's part of the failover protocol (docs/architecture.md
// "Failover"; its reports in docs/reference/commands.md): planned and
// unplanned failover, change of recovery point, cancel, commit and reverse
// replication, fencing of a returning former source, test failover and
// resync. The VM controller's goroutine calls failoverOwns at
// the start of every pass; when it returns true the pass is the failover
// side's alone (the plain source and recovery reconciliation do not run).
//
// Durable state: <data>/failover/<vm>.json (failoverState). Everything else
// is derived from the event log on each pass.

// failoverSide is a VM controller's failover memory. Owned by the
// controller's goroutine (run, then close).
type failoverSide struct {
	loaded bool
	st     failoverState
	info   foldInfo
	// infoVersion is the VM version info was folded at.
	infoVersion uint64

	trees   *sourceTrees
	test    *testSide
	leaves  Subscription
	leafRep *replica.Replica // the replica the leaves subscription serves
	served  bool             // what the VM driver was last told
	// readyPoint is the point the last failover_ready reported.
	readyPoint string
	// peerWait is when the resync began to wait for its peer (zero: it
	// does not wait).
	peerWait time.Time
}

// failoverState is <data>/failover/<vm>.json.
type failoverState struct {
	// SrcEpoch is the epoch the source disks' change log numbers its
	// cycles for (0: not known yet).
	SrcEpoch uint64 `json:"src_epoch,omitempty"`
	// FinalStart and FinalCycle: the final cycle closed for the planned
	// failover started at log sequence FinalStart.
	FinalStart uint64 `json:"final_start,omitempty"`
	FinalCycle uint64 `json:"final_cycle,omitempty"`
	// Promoted is the epoch the replica was promoted to the VM's disks at
	// (0: not promoted), from PromotedPoint, for the failover started at
	// PromotedStart.
	Promoted      uint64 `json:"promoted,omitempty"`
	PromotedPoint string `json:"promoted_point,omitempty"`
	PromotedStart uint64 `json:"promoted_start,omitempty"`
	// AsideEpoch is the old epoch whose divergence was measured: set
	// aside and reported when there was any (none: DivergenceSent, with
	// nothing to send).
	AsideEpoch uint64 `json:"aside_epoch,omitempty"`
	// Divergence is what was set aside, until the control plane took
	// the report (DivergenceSent).
	Divergence     agentproto.DivergenceReport `json:"divergence"`
	DivergenceSent bool                        `json:"divergence_sent,omitempty"`
	// Converting and ReplicaFrom: the reverse replication (its start's
	// log sequence) for which the old disks are being / were turned into
	// the replica.
	Converting  uint64 `json:"converting,omitempty"`
	ReplicaFrom uint64 `json:"replica_from,omitempty"`
	// OldReplicaDropped: the failover (start sequence) after whose commit
	// the old replica was deleted.
	OldReplicaDropped uint64 `json:"old_replica_dropped,omitempty"`
	// Resync is the last resync run.
	Resync resyncState `json:"resync"`
}

// foldInfo is what the agent needs of the VM's history beyond events.VM.
type foldInfo struct {
	startSeq   uint64 // the current failover's failover_started
	startJob   string // its job (correlation id)
	started    events.FailoverStartedData
	stopped    *events.SourceStoppedData // of startSeq
	testPoint  string
	testNet    string
	nics       []events.NIC
	reverseSeq uint64
	resyncSeq  uint64
}

func (c *vmCtl) failoverPath() string {
	return filepath.Join(c.a.cfg.DataDir, "failover", c.name+".json")
}

func (c *vmCtl) saveFailover() error {
	if err := os.MkdirAll(filepath.Dir(c.failoverPath()), 0o750); err != nil {
		return err
	}
	return saveJSON(c.failoverPath(), c.fo.st)
}

// quietStates need nothing of the VM's history beyond events.VM.
var quietStates = []events.ProtectionState{
	events.Unprotected, events.EnablingProtection, events.EnablingFailed, events.InitialReplication,
	events.Protected, events.Paused, events.DisablingProtection,
}

// refreshInfo folds foldInfo from the VM's events when the VM changed and
// is in a state that needs it.
func (c *vmCtl) refreshInfo(ctx context.Context, vm events.VM) error {
	if c.fo.infoVersion == vm.Version {
		return nil
	}
	if slices.Contains(quietStates, vm.State) && (vm.TestState == events.TestNone || vm.TestState == "") {
		return nil
	}
	recs, err := c.a.cfg.Log.Load(ctx, events.VMAgg(vm.Name))
	if err != nil {
		return fmt.Errorf("load vm %s: %w", vm.Name, err)
	}
	var in foldInfo
	for _, r := range recs {
		in.apply(r)
	}
	c.fo.info, c.fo.infoVersion = in, vm.Version
	return nil
}

func (in *foldInfo) apply(r events.Record) {
	switch d := r.Data.(type) {
	case events.FailoverStartedData:
		in.startSeq, in.started, in.stopped = r.Seq, d, nil
		in.startJob = r.Meta.CorrelationID
		if in.startJob == "" {
			in.startJob = r.Meta.CommandID
		}
	case events.SourceStoppedData:
		in.stopped = &d
	case events.TestFailoverStartedData:
		in.testPoint, in.testNet = d.RecoveryPoint, d.Network
	case events.FailoverCompletedData:
		in.nics = d.NICs
	case events.ReverseReplicationStartedData:
		in.reverseSeq = r.Seq
	case events.ResyncStartedData:
		in.resyncSeq = r.Seq
	}
}

// failoverOwns runs this host's failover part for the VM and says whether
// it took the pass over.
func (c *vmCtl) failoverOwns(ctx context.Context, vm events.VM, enableSeq uint64, ack cycleAck) bool {
	if !c.fo.loaded {
		if _, err := loadJSON(c.failoverPath(), &c.fo.st); err != nil {
			c.warnOnce("failover", err)
			return true
		}
		c.fo.loaded = true
	}
	if err := c.refreshInfo(ctx, vm); err != nil {
		c.warnOnce("failover", err)
		return true
	}
	c.driveVM(ctx, vm)
	c.reconcileTest(ctx, vm)
	own, err := c.failoverPass(ctx, vm, enableSeq, ack)
	if err == nil {
		err = c.reportDivergence(ctx)
	}
	switch {
	case err == nil:
		c.peerAnswered(vm)
	case ctx.Err() != nil:
	case errors.Is(err, ErrPeerUnavailable):
		c.waitForPeer(vm, err)
	default:
		c.warnOnce("failover", err)
	}
	c.serveLeaves(vm)
	return own
}

// waitForPeer logs a resync that waits for its peer, the recovery host:
// its agent is down, or it does not hold the replica yet (after a reverse,
// while it turns its old disks into the replica). Routine at first: once,
// at info, when the wait begins; a warning every 10 s once it has lasted
// PeerWaitWarnAfter.
func (c *vmCtl) waitForPeer(vm events.VM, err error) {
	now := time.Now()
	if c.fo.peerWait.IsZero() {
		c.fo.peerWait = now
		c.logger.Info().Err(err).Str("peer", vm.RecoveryHost).Dur("warn_after", c.a.cfg.PeerWaitWarnAfter).
			Msg("resync waits for its peer to answer")
		return
	}
	waited := now.Sub(c.fo.peerWait)
	if waited >= c.a.cfg.PeerWaitWarnAfter && c.due("warn:peer-wait", 10*time.Second) {
		c.logger.Warn().Err(err).Str("peer", vm.RecoveryHost).Dur("waited", waited.Round(time.Second)).
			Msg("resync still waiting for its peer")
	}
}

// peerAnswered ends a wait for the resync's peer.
func (c *vmCtl) peerAnswered(vm events.VM) {
	if c.fo.peerWait.IsZero() {
		return
	}
	c.logger.Info().Str("peer", vm.RecoveryHost).Dur("waited", time.Since(c.fo.peerWait).Round(time.Millisecond)).
		Msg("resync no longer waits for its peer")
	c.fo.peerWait = time.Time{}
}

// failoverPass dispatches on this host's role in the VM.
func (c *vmCtl) failoverPass(ctx context.Context, vm events.VM, enableSeq uint64, ack cycleAck) (bool, error) {
	h := c.a.cfg.Host
	switch {
	case c.fo.st.Promoted == 0:
	case vm.ActiveHost != h && !c.promoting(vm):
		if err := c.demote(vm); err != nil {
			return true, err
		}
	case vm.ActiveHost == h && !slices.Contains(uncommittedStates, vm.State):
		if err := c.dropOldReplica(vm); err != nil {
			return true, err
		}
	}
	switch {
	case vm.State == events.ReverseReplicationState && vm.RecoveryHost == h:
		return c.reverseRecovery(ctx, vm, enableSeq)
	case vm.SourceHost == h:
		return c.sourcePass(ctx, vm, enableSeq, ack)
	case vm.RecoveryHost == h:
		return c.recoveryPass(ctx, vm, enableSeq)
	}
	return false, nil
}

// promoting says whether this host is the recovery host of a failover in
// progress, which serves the promoted disks before the log names it active.
func (c *vmCtl) promoting(vm events.VM) bool {
	switch vm.State {
	case events.PlannedFailoverInProgress, events.UnplannedFailoverInProgress:
		return vm.RecoveryHost == c.a.cfg.Host && c.fo.st.PromotedStart == c.fo.info.startSeq
	}
	return false
}

// sourcePass is the source host's part.
func (c *vmCtl) sourcePass(ctx context.Context, vm events.VM, enableSeq uint64, ack cycleAck) (bool, error) {
	switch vm.State {
	case events.PlannedFailoverInProgress:
		return true, c.plannedStop(ctx, vm, enableSeq, ack)
	case events.PlannedFailoverFailed:
		return true, c.fence(ctx, vm)
	case events.UnplannedFailoverInProgress, events.UnplannedFailoverFailed:
		if c.fo.info.started.ShutdownSource {
			return true, c.unplannedStop(ctx, vm)
		}
		return false, nil
	case events.FailoverCommitPending, events.FailoverCommittedState:
		if vm.ActiveHost == c.a.cfg.Host {
			return false, nil // a cancelled failover's way back is not here
		}
		return true, c.formerSource(ctx, vm)
	case events.Resynchronizing, events.ReverseReplicationState:
		return c.resyncSource(ctx, vm, enableSeq, ack)
	}
	if !slices.Contains(shipStates, vm.State) {
		return false, nil
	}
	if c.src == nil {
		if err := c.openDisks(vm); err != nil {
			return false, nil // the source reconciliation reports it
		}
	}
	if c.fo.st.SrcEpoch == 0 {
		c.fo.st.SrcEpoch = vm.Epoch
		if err := c.saveFailover(); err != nil {
			return true, err
		}
	}
	if vm.State == events.EnablingProtection || vm.State == events.InitialReplication {
		c.dropTrees() // the initial replication resets the change log
		return false, nil
	}
	if c.fo.st.SrcEpoch < vm.Epoch {
		// A cancelled failover: the source goes on at a new epoch, its
		// cycles numbered from 1 after a resync to the replica.
		return c.resyncSource(ctx, vm, enableSeq, ack)
	}
	c.updateTrees(vm)
	return false, nil
}

// recoveryPass is the recovery host's part (before reverse replication).
func (c *vmCtl) recoveryPass(ctx context.Context, vm events.VM, enableSeq uint64) (bool, error) {
	switch vm.State {
	case events.PlannedFailoverInProgress:
		return c.plannedPromote(ctx, vm, enableSeq)
	case events.UnplannedFailoverInProgress:
		return true, c.unplannedPromote(ctx, vm, enableSeq)
	case events.FailoverCommitPending:
		if vm.ActiveHost == c.a.cfg.Host && vm.FailoverPoint != c.fo.st.PromotedPoint && c.fo.st.Promoted == vm.Epoch {
			return true, c.changePoint(ctx, vm, enableSeq)
		}
		c.reportReady(ctx, vm)
	}
	return false, nil
}

// uncommittedStates are those in which promoted disks may still be
// dropped (a failed or cancelled failover).
var uncommittedStates = []events.ProtectionState{
	events.PlannedFailoverInProgress, events.UnplannedFailoverInProgress, events.PlannedFailoverFailed,
	events.UnplannedFailoverFailed, events.FailoverCommitPending,
}

// Exports lists the NBD exports the agent serves now (tests check that no
// VM is served at two sites at once).
func (a *Agent) Exports() []string { return a.nbd.Exports() }

// closeFailover releases the failover side's resources at agent close.
func (c *vmCtl) closeFailover() error {
	var err error
	if c.fo.leaves != nil {
		err = c.fo.leaves.Unsubscribe()
		c.fo.leaves = nil
	}
	if c.fo.test != nil {
		err = joinErr(err, c.fo.test.view.Close())
		c.fo.test = nil
	}
	return err
}

func joinErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}
