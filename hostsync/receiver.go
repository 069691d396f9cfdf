package hostsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/agentproto"
	"github.com/siterecovery/siterecovery/hostsync/batch"
	"github.com/siterecovery/siterecovery/hostsync/cycle"
	"github.com/siterecovery/siterecovery/hostsync/replica"
)

// The batches the server sends and the agent has not taken yet sit in the
// connection's buffers, and a server cuts a client that lets more than its
// max_pending (64 MiB by default) pile up. The VMs a recovery host applies
// share pullBudget: each pulls at most pullBudget / (number of VMs applying
// at its start), between minPull and maxPull, so a few VMs take batches in
// big windows (a fast initial replication) and many stay under the limit.
// idleSync is how long no batch comes before the chunks of a first copy are
// synced.
const (
	pullBudget = 48 << 20
	minPull    = 4 << 20
	maxPull    = 32 << 20
	idleSync   = 50 * time.Millisecond
)

// pullShare is the bytes one of n applying VMs pulls at once.
func pullShare(n int) int {
	return min(max(pullBudget/max(n, 1), minPull), maxPull)
}

// initialSyncBytes is how much of a first copy is written between syncs.
const initialSyncBytes = 128 << 20

// gapRetries and gapDelay bound how long a batch that arrived before the
// one it follows waits for it (about gapRetries × gapDelay).
const (
	gapRetries = 20
	gapDelay   = 500 * time.Millisecond
)

// ackWait is how long a delivered batch may stay unacknowledged before it
// is delivered again; the batches of a cycle being assembled are kept alive
// with in-progress acks.
const ackWait = 30 * time.Second

// recoverySide is the recovery host's part for a VM: its replica and the
// goroutine consuming its batches.
type recoverySide struct {
	replica   *replica.Replica
	enableSeq uint64
	// initialUpTo is receiveState.InitialUpTo, read by run, written by
	// the receiver goroutine.
	initialUpTo atomic.Uint64
	cancel      context.CancelFunc
	done        chan struct{}
	// mismatched are the points whose roots disagreed with the source's
	// (integrity_check.go): never reported.
	mismatched mismatchedPoints
	// checking is the point the receiver applied and has not checked
	// against the source's roots yet: not reported by another pass.
	checking atomic.Value // string
}

// receiveState is <replicas>/<vm>.agent.json: which protection the replica
// serves and up to which cycle the cycles were Initial (not points).
type receiveState struct {
	EnableSeq   uint64 `json:"enable_seq"`
	InitialUpTo uint64 `json:"initial_up_to"`
}

func (c *vmCtl) receiveStatePath() string {
	return filepath.Join(c.a.replicasDir(), c.name+".agent.json")
}

// stop stops the consumer goroutine.
func (r *recoverySide) stop() {
	if r.cancel != nil {
		r.cancel()
		<-r.done
		r.cancel = nil
	}
}

func (r *recoverySide) close() error {
	r.stop()
	if r.replica == nil {
		return nil
	}
	err := r.replica.Close()
	r.replica = nil
	return err
}

// reconcileRecovery keeps the replica and its consumer running while this
// host is the VM's recovery host and replication runs, and finishes a
// disable.
func (c *vmCtl) reconcileRecovery(ctx context.Context, vm events.VM, enableSeq uint64) error {
	if vm.RecoveryHost != c.a.cfg.Host {
		if c.rcv != nil {
			c.rcv.stop()
		}
		return nil
	}
	if vm.State == events.DisablingProtection {
		return c.disableReplica(ctx, vm)
	}
	if !slices.Contains(receiveStates, vm.State) {
		if c.rcv != nil {
			c.rcv.stop()
		}
		return nil
	}
	if c.rcv == nil || c.rcv.replica == nil {
		if err := c.openReplica(vm, enableSeq); err != nil {
			c.reportError(ctx, agentproto.CodeApplyFailed, err)
			return err
		}
	}
	if c.rcv.cancel == nil {
		if err := c.startReceiver(ctx, vm); err != nil {
			return err
		}
	}
	c.reportReplica(ctx, vm)
	return nil
}

// openReplica opens the VM's replica; a replica of an earlier protection
// (another enable) is deleted first.
func (c *vmCtl) openReplica(vm events.VM, enableSeq uint64) error {
	dir := c.a.replicaDir(vm.Name)
	var st receiveState
	if _, err := loadJSON(c.receiveStatePath(), &st); err != nil {
		return err
	}
	if st.EnableSeq != enableSeq {
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("remove old replica: %w", err)
		}
		st = receiveState{EnableSeq: enableSeq}
		if err := saveJSON(c.receiveStatePath(), st); err != nil {
			return err
		}
	}
	var opts replica.Options
	if hook := c.a.cfg.ReplicaHook; hook != nil {
		opts.Hook = func(stage string) error { return hook(vm.Name, stage) }
	}
	rep, err := replica.OpenWithOptions(dir, vm.Name, vm.Disks, c.logger, opts)
	if err != nil {
		return err
	}
	c.rcv = &recoverySide{replica: rep, enableSeq: st.EnableSeq}
	c.rcv.initialUpTo.Store(st.InitialUpTo)
	return nil
}

func (c *vmCtl) startReceiver(ctx context.Context, vm events.VM) error {
	deltas := c.a.tr.Deltas
	if err := deltas.EnsureStream(ctx, vm.TargetSite); err != nil {
		return err
	}
	// The consumer is made afresh: the messages a previous run held
	// unacknowledged (it crashed mid-cycle) come again at once, in stream
	// order, instead of after the ack wait; the replica drops what it has.
	if err := deltas.DeleteConsumer(ctx, vm.TargetSite, vm.Name); err != nil && !errors.Is(err, ErrConsumerNotFound) {
		return fmt.Errorf("reset delta consumer of %s: %w", vm.Name, err)
	}
	cons, err := deltas.CreateConsumer(ctx, vm.TargetSite, vm.Name, ackWait)
	if err != nil {
		return fmt.Errorf("delta consumer of %s: %w", vm.Name, err)
	}
	rctx, cancel := context.WithCancel(ctx)
	c.rcv.cancel, c.rcv.done = cancel, make(chan struct{})
	epoch, seq := c.rcv.replica.LastApplied()
	rx := &receiver{c: c, rep: c.rcv.replica, cons: cons, asm: batch.NewAssembler(vm.Name, max(epoch, vm.Epoch), seq+1), side: c.rcv}
	if epoch < vm.Epoch {
		rx.asm.Reset(vm.Epoch, 1)
	}
	go rx.run(rctx, c.rcv.done)
	return nil
}

// unchecked says whether point id failed the integrity check or is being
// checked: a point the receiver applies is visible before it is checked.
func (r *recoverySide) unchecked(id string) bool {
	checking, _ := r.checking.Load().(string)
	return checking == id || r.mismatched.has(id)
}

// reportReplica reports the replica's images and the points the VM does
// not record yet (a report lost, or the agent stopped before sending it).
func (c *vmCtl) reportReplica(ctx context.Context, vm events.VM) {
	rep := c.rcv.replica
	for _, d := range vm.Disks {
		want := events.DiskImage{Host: c.a.cfg.Host, Role: events.DiskRoleReplica, Image: rep.ImagePath(d.Name), Epoch: vm.Epoch}
		if !provisioned(vm, d.Name, want) {
			c.reportOnce(ctx, "provision-replica:"+d.Name, agentproto.VerbDiskProvisioned, agentproto.DiskProvisionedReport{
				VM: c.name, Disk: d.Name, Role: want.Role, Image: want.Image, Epoch: want.Epoch,
			})
		}
	}
	for _, p := range rep.Points() {
		if p.Epoch != vm.Epoch || p.Cycle <= c.rcv.initialUpTo.Load() || c.rcv.unchecked(p.ID) {
			continue
		}
		if _, ok := vm.RecoveryPoint(p.ID); !ok {
			c.reportOnce(ctx, "point:"+p.ID, agentproto.VerbRecoveryPoint, pointBody(c.name, p, 0))
		}
	}
}

func pointBody(vm string, p replica.Point, bytes int64) agentproto.RecoveryPointReport {
	return agentproto.RecoveryPointReport{
		CommandID: "point-" + vm + "-" + p.ID, VM: vm, ID: p.ID, Time: p.Time, AppConsistent: p.AppConsistent,
		Cycle: p.Cycle, Epoch: p.Epoch, Roots: p.Roots, RootsHash: p.RootsHash, Bytes: bytes,
	}
}

// disableReplica stops applying, removes the consumer and the VM's
// leftover batches, deletes the replica if the policy says so, and reports
// protection_disabled.
func (c *vmCtl) disableReplica(ctx context.Context, vm events.VM) error {
	var errs []error
	if c.rcv != nil {
		errs = append(errs, c.rcv.close())
		c.rcv = nil
	}
	deltas := c.a.tr.Deltas
	if err := deltas.DeleteConsumer(ctx, vm.TargetSite, vm.Name); err != nil && !errors.Is(err, ErrConsumerNotFound) && !errors.Is(err, ErrStreamNotFound) {
		errs = append(errs, err)
	}
	if err := deltas.Purge(ctx, vm.TargetSite, vm.Name); !errors.Is(err, ErrStreamNotFound) {
		errs = append(errs, err)
	}
	deleted := vm.Settings.DeleteReplicaOnDisable
	if deleted {
		errs = append(errs, os.RemoveAll(c.a.replicaDir(vm.Name)), os.Remove(c.receiveStatePath()))
	}
	if err := errors.Join(errs...); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	c.reportOnce(ctx, "disabled", agentproto.VerbDisabled, agentproto.DisabledReport{VM: c.name, ReplicaDeleted: deleted})
	return nil
}

// receiver consumes one VM's batches: it checks them, assembles whole
// cycles, applies them durably, and only then acknowledges the messages.
type receiver struct {
	c    *vmCtl
	rep  *replica.Replica
	cons BatchConsumer
	asm  *batch.Assembler
	held []Delivery
	// unsynced are the messages of the chunks ApplyInitial wrote, acked
	// once SyncInitial made them durable.
	unsynced      []Delivery
	unsyncedBytes int64
	side          *recoverySide
	// touched is when the held batches were last kept alive.
	touched time.Time
}

func (rx *receiver) run(ctx context.Context, done chan struct{}) {
	defer close(done)
	rx.c.a.receiving.Add(1)
	defer rx.c.a.receiving.Add(-1)
	for ctx.Err() == nil {
		if err := rx.consume(ctx); err != nil && ctx.Err() == nil {
			rx.c.logger.Debug().Err(err).Msg("consume batches")
			rx.wait(ctx, time.Second)
		}
	}
	rx.syncInitial(context.Background())
	for _, m := range rx.held {
		_ = m.Nak(0)
	}
}

// consume takes the VM's batches as they come (the client keeps up to the
// VM's pullShare of them coming while the replica applies) until ctx ends
// or the subscription fails. When nothing arrived for idleSync, the chunks
// of the first copy written so far are made durable.
func (rx *receiver) consume(ctx context.Context) error {
	share := pullShare(int(rx.c.a.receiving.Load()))
	it, err := rx.cons.Pull(share)
	if err != nil {
		return err
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		msg, err := it.Next(idleSync)
		if errors.Is(err, ErrNoBatch) {
			rx.syncInitial(ctx)
			continue
		}
		if err != nil {
			return err
		}
		rx.handle(ctx, msg)
	}
}

func (rx *receiver) wait(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// handle takes one message. Nothing in a message can stop the receiver:
// garbage and batches of another VM or an older epoch are terminated and
// reported, a gap drops the partial cycle (the source sends it again).
func (rx *receiver) handle(ctx context.Context, msg Delivery) {
	vm, _, _ := rx.c.snapshot()
	b, err := batch.Decode(msg.Data)
	if err == nil {
		err = checkBatchSubject(msg.Subject, b)
	}
	if err == nil && b.VM != vm.Name {
		err = fmt.Errorf("%w: batch of vm %q on vm %s's subject", cycle.ErrInvalid, b.VM, vm.Name)
	}
	if err != nil {
		rx.refuse(ctx, msg, agentproto.CodeBadBatch, err)
		return
	}
	if b.Epoch < vm.Epoch {
		rx.refuse(ctx, msg, agentproto.CodeStaleEpoch, fmt.Errorf("batch of epoch %d, vm at epoch %d: %w", b.Epoch, vm.Epoch, cycle.ErrStaleEpoch))
		return
	}
	if b.Epoch > vm.Epoch {
		_ = msg.Nak(time.Second) // the log will tell us about the new epoch
		return
	}
	rx.add(ctx, msg, b)
}

func (rx *receiver) add(ctx context.Context, msg Delivery, b batch.Batch) {
	if b.Epoch > rx.asm.Epoch() && b.Cycle == 1 {
		rx.dropHeld()
		rx.asm.Reset(b.Epoch, 1)
	}
	fresh := b.Epoch == rx.asm.Epoch() && b.Cycle == rx.asm.Next() && b.Index == rx.asm.Held()
	cyc, whole, err := rx.asm.Add(b)
	switch {
	case errors.Is(err, cycle.ErrApplied):
		_ = msg.Ack()
		rx.sendAck()
		return
	case errors.Is(err, cycle.ErrSeqGap), errors.Is(err, cycle.ErrBatchGap):
		rx.outOfOrder(ctx, msg, b, err)
		return
	case err != nil:
		rx.refuse(ctx, msg, agentproto.CodeBadBatch, err)
		return
	}
	rx.held = append(rx.held, msg)
	if fresh {
		rx.preimage(b)
	}
	if whole {
		rx.apply(ctx, cyc)
		return
	}
	if time.Since(rx.touched) > ackWait/3 {
		for _, m := range rx.held {
			_ = m.InProgress()
		}
		rx.touched = time.Now()
	}
}

// preimage saves the undo data of a new batch while the next ones are on
// their way (Replica.Preimage). A first copy needs none.
func (rx *receiver) preimage(b batch.Batch) {
	if b.Initial && rx.rep.FirstCopy() {
		return
	}
	if err := rx.rep.Preimage(b.Epoch, b.Cycle, b.Index, b.Extents); err != nil {
		rx.c.logger.Debug().Err(err).Msg("preimage dropped: the apply saves the undo data itself")
	}
}

// outOfOrder handles a batch that arrived before one it follows: a publish
// retried after a failure lands later in the stream than the batches
// published after it. The batch is delivered again a little later, up to
// gapRetries times, so the missing one can come first; after that the
// missing batch counts as lost: the partial cycle and the batch are dropped
// and the source, seeing its cycles unapplied and nothing left to deliver,
// sends them again. Nothing is ever applied over a gap.
func (rx *receiver) outOfOrder(ctx context.Context, msg Delivery, b batch.Batch, err error) {
	if n := msg.Delivered; n > 0 && n < gapRetries {
		_ = msg.Nak(gapDelay)
		return
	}
	rx.dropHeld()
	epoch, seq := rx.rep.LastApplied()
	rx.asm.Reset(max(epoch, b.Epoch), seq+1)
	_ = msg.Term()
	rx.c.reportError(ctx, agentproto.CodeCycleGap, fmt.Errorf("batch after a gap dropped (the source sends the missing cycles again): %w", err))
}

// checkBatchSubject checks the subject's epoch token against the batch.
func checkBatchSubject(subject string, b batch.Batch) error {
	tok := subject[strings.LastIndexByte(subject, '.')+1:]
	if e, err := strconv.ParseUint(tok, 10, 64); err != nil || e != b.Epoch {
		return fmt.Errorf("%w: batch of epoch %d on subject %s", cycle.ErrInvalid, b.Epoch, subject)
	}
	return nil
}

func (rx *receiver) refuse(ctx context.Context, msg Delivery, code string, err error) {
	_ = msg.Term()
	rx.c.reportError(ctx, code, fmt.Errorf("batch %s refused: %w", msg.Subject, err))
}

func (rx *receiver) dropHeld() {
	for _, m := range rx.held {
		_ = m.Term()
	}
	rx.held = nil
}

// apply applies a whole cycle; the messages are acknowledged once the apply
// is durable, and the point is reported (unless Initial).
func (rx *receiver) apply(ctx context.Context, cyc cycle.Cycle) {
	held := rx.held
	rx.held = nil
	if cyc.Initial && rx.rep.FirstCopy() {
		rx.applyInitial(ctx, cyc, held)
		return
	}
	if !rx.syncInitial(ctx) {
		rx.failApply(ctx, held, errors.New("initial chunks not synced"))
		return
	}
	if cyc.Initial && cyc.Seq > rx.side.initialUpTo.Load() {
		if err := rx.saveInitialUpTo(cyc.Seq); err != nil {
			rx.failApply(ctx, held, err)
			return
		}
	}
	rx.side.checking.Store(replica.PointID(cyc.Epoch, cyc.Seq))
	defer rx.side.checking.Store("")
	start := time.Now()
	p, err := rx.rep.Apply(ctx, cyc)
	applied := time.Now()
	if errors.Is(err, cycle.ErrApplied) {
		ackAll(held)
		rx.sendAck()
		return
	}
	if err != nil {
		rx.failApply(ctx, held, err)
		return
	}
	// The point is durable: it is reported first (what the RPO waits
	// for), then its messages are acknowledged; a crash in between
	// delivers them again and the replica drops them as applied.
	if !cyc.Initial && rx.rootsMatch(ctx, cyc, p) { // integrity_check.go
		rx.c.reportOnce(ctx, "point:"+p.ID, agentproto.VerbRecoveryPoint, pointBody(cyc.VM, p, cycleBytes(cyc)))
	}
	ackAll(held)
	rx.sendAck()
	rx.c.logger.Debug().Str("point", p.ID).Dur("since_close", start.Sub(cyc.ClosedAt)).Dur("apply", applied.Sub(start)).
		Dur("report", time.Since(applied)).Msg("cycle applied and reported")
	rx.prune(ctx)
}

// applyInitial writes a chunk of the first copy; its messages wait for the
// next syncInitial (after the fetch, or once initialSyncBytes are written).
func (rx *receiver) applyInitial(ctx context.Context, cyc cycle.Cycle, held []Delivery) {
	err := rx.rep.ApplyInitial(ctx, cyc)
	if err != nil && !errors.Is(err, cycle.ErrApplied) {
		rx.failApply(ctx, append(rx.unsynced, held...), err)
		rx.unsynced, rx.unsyncedBytes = nil, 0
		return
	}
	rx.side.initialUpTo.Store(max(rx.side.initialUpTo.Load(), cyc.Seq))
	rx.unsynced = append(rx.unsynced, held...)
	rx.unsyncedBytes += cycleBytes(cyc)
	if rx.unsyncedBytes >= initialSyncBytes {
		rx.syncInitial(ctx)
	}
}

// syncInitial makes the chunks ApplyInitial wrote durable and acknowledges
// their messages; on an error they are delivered again. It says whether
// nothing is left unsynced.
func (rx *receiver) syncInitial(ctx context.Context) bool {
	if len(rx.unsynced) == 0 {
		return true
	}
	msgs, bytes := rx.unsynced, rx.unsyncedBytes
	rx.unsynced, rx.unsyncedBytes = nil, 0
	start := time.Now()
	err := rx.saveInitialUpTo(rx.side.initialUpTo.Load())
	if err == nil {
		err = rx.rep.SyncInitial()
	}
	if err != nil {
		rx.failApply(ctx, msgs, err)
		return false
	}
	rx.c.logger.Debug().Int64("bytes", bytes).Dur("took", time.Since(start)).Msg("initial chunks synced")
	ackAll(msgs)
	rx.sendAck()
	return true
}

// saveInitialUpTo records that the cycles up to seq were Initial (never
// reported as points).
func (rx *receiver) saveInitialUpTo(seq uint64) error {
	rx.side.initialUpTo.Store(max(rx.side.initialUpTo.Load(), seq))
	return saveJSON(rx.c.receiveStatePath(), receiveState{EnableSeq: rx.side.enableSeq, InitialUpTo: rx.side.initialUpTo.Load()})
}

func (rx *receiver) failApply(ctx context.Context, held []Delivery, err error) {
	for _, m := range held {
		_ = m.Nak(time.Second)
	}
	epoch, seq := rx.rep.LastApplied()
	rx.asm.Reset(max(epoch, rx.asm.Epoch()), seq+1)
	rx.c.reportError(ctx, agentproto.CodeApplyFailed, err)
}

func ackAll(msgs []Delivery) {
	for i, m := range msgs {
		if i == len(msgs)-1 {
			_ = m.AckSync(context.Background())
			continue
		}
		_ = m.Ack()
	}
}

func cycleBytes(c cycle.Cycle) int64 {
	var n int64
	for _, e := range c.Extents {
		if !e.Zero {
			n += e.Length
		}
	}
	return n
}

// sendAck tells the source host the replica's last applied cycle.
func (rx *receiver) sendAck() {
	vm, _, _ := rx.c.snapshot()
	epoch, seq := rx.rep.LastApplied()
	data, _ := json.Marshal(cycleAck{Enable: rx.side.enableSeq, Epoch: epoch, Seq: seq})
	if err := rx.c.a.tr.Peers.Publish(agentproto.AckSubject(vm.SourceHost, vm.Name), data); err != nil {
		rx.c.logger.Debug().Err(err).Msg("cycle ack")
	}
}

// prune drops the points the policy does not retain and reports them.
func (rx *receiver) prune(ctx context.Context) {
	vm, _, _ := rx.c.snapshot()
	s := vm.Settings
	ids, err := rx.rep.Prune(time.Now(), replica.RetentionPolicy{
		Retention: s.Retention.D(), CopyFrequency: s.CopyFrequency.D(), AppConsistentEvery: s.AppConsistentEvery.D(),
	})
	if err != nil {
		rx.c.logger.Warn().Err(err).Msg("prune recovery points")
	}
	var known []string
	for _, id := range ids {
		if _, ok := vm.RecoveryPoint(id); ok {
			known = append(known, id)
		}
	}
	if len(known) > 0 {
		if err := rx.c.a.rep.report(ctx, agentproto.VerbPointsPruned, agentproto.PointsPrunedReport{VM: vm.Name, IDs: known}); err != nil {
			rx.c.logger.Debug().Err(err).Msg("report pruned points")
		}
	}
}
