package hostsync

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/agentproto"
	"github.com/siterecovery/siterecovery/hostsync/disk"
	"github.com/siterecovery/siterecovery/hostsync/hashtree"
	"github.com/siterecovery/siterecovery/hostsync/nbd"
)

// Promotion: the recovery host makes a recovery point of its replica the
// VM's active disks. The point is materialized (a sparse copy) into
// vms/<vm>/<disk>.img, opened as tracked disks with a fresh change log
// (cycles of the new epoch from 1, for reverse replication), served over
// NBD and reported with failover_ready. The replica itself is left as it
// is, so change_recovery_point can pick any retained point and
// cancel_failover finds the replica role intact.

// plannedPromote waits (receiving as usual) until the source stopped and
// the final cycle is applied, verifies the replica against the source's
// roots, and promotes the latest point.
func (c *vmCtl) plannedPromote(ctx context.Context, vm events.VM, enableSeq uint64) (bool, error) {
	in := c.fo.info
	if c.fo.st.PromotedStart == in.startSeq && c.fo.st.Promoted == vm.Epoch+1 {
		return true, c.servePromoted(ctx, vm)
	}
	if in.stopped == nil || c.rcv == nil || c.rcv.replica == nil {
		return false, nil
	}
	rep := c.rcv.replica
	epoch, seq := rep.LastApplied()
	if epoch != vm.Epoch || seq < in.stopped.FinalCycle {
		return false, nil
	}
	_, _, roots, err := rep.RehashRoots() // a scrub, not the kept trees
	if err != nil {
		return false, err
	}
	if !hashtree.SameHash(in.stopped.RootsHash) && len(in.stopped.Roots) > 0 {
		// A source of another build: its roots are of another hash and
		// vouch for nothing here; the replica holds every cycle up to the
		// final one, each applied whole.
		c.logger.Warn().Str("source_hash", hashOrSHA256(in.stopped.RootsHash)).Str("hash", hashtree.HashName).
			Msg("planned failover: the source's roots are of another hash, the replica is not verified against them")
	}
	for disk, want := range in.stopped.Roots {
		if !hashtree.SameHash(in.stopped.RootsHash) {
			break
		}
		if roots[disk] != want {
			err := fmt.Errorf("%w: disk %s: replica root %s, source root %s", ErrVerifyFailed, disk, roots[disk], want)
			c.reportError(ctx, agentproto.CodeVerifyFailed, err)
			return true, err
		}
	}
	points := rep.Points()
	if len(points) == 0 {
		return false, nil
	}
	return true, c.promote(ctx, vm, enableSeq, points[len(points)-1].ID)
}

// unplannedPromote stops applying and promotes the failover's point.
func (c *vmCtl) unplannedPromote(ctx context.Context, vm events.VM, enableSeq uint64) error {
	if c.fo.st.PromotedStart == c.fo.info.startSeq && c.fo.st.Promoted == vm.Epoch+1 {
		return c.servePromoted(ctx, vm)
	}
	if c.rcv != nil {
		c.rcv.stop()
	}
	point := vm.FailoverPoint
	if point == "" {
		point = c.fo.info.started.RecoveryPoint
	}
	return c.promote(ctx, vm, enableSeq, point)
}

// changePoint serves another point of the replica after
// change_recovery_point, at the same epoch.
func (c *vmCtl) changePoint(ctx context.Context, vm events.VM, enableSeq uint64) error {
	c.stopServing(ctx, vm)
	if c.src != nil {
		if err := c.src.close(c.a.nbd); err != nil {
			return err
		}
		c.src = nil
	}
	return c.promoteAt(ctx, vm, enableSeq, vm.FailoverPoint, vm.Epoch)
}

func (c *vmCtl) promote(ctx context.Context, vm events.VM, enableSeq uint64, point string) error {
	return c.promoteAt(ctx, vm, enableSeq, point, vm.Epoch+1)
}

// promoteAt materializes point as the VM's disks served at epoch.
func (c *vmCtl) promoteAt(ctx context.Context, vm events.VM, enableSeq uint64, point string, epoch uint64) error {
	if c.rcv == nil || c.rcv.replica == nil {
		if err := c.openReplica(vm, enableSeq); err != nil {
			return err
		}
	}
	c.rcv.stop()
	if err := c.purgeDeltas(ctx, vm); err != nil {
		return err
	}
	dir := c.a.vmDir(vm.Name)
	if err := clearVMDir(dir, vm.Disks); err != nil {
		return err
	}
	if _, err := c.rcv.replica.MaterializePoint(ctx, point, dir); err != nil {
		return fmt.Errorf("promote %s: %w", point, err)
	}
	if err := c.openPromoted(vm, enableSeq, epoch); err != nil {
		return err
	}
	c.fo.st.Promoted, c.fo.st.PromotedPoint, c.fo.st.SrcEpoch = epoch, point, epoch
	if vm.State != events.FailoverCommitPending {
		c.fo.st.PromotedStart = c.fo.info.startSeq
	}
	if err := c.saveFailover(); err != nil {
		return err
	}
	c.fo.trees = nil
	c.logger.Info().Str("point", point).Uint64("epoch", epoch).Msg("replica promoted to the vm's disks")
	return c.servePromoted(ctx, vm)
}

// clearVMDir removes what an earlier life of the VM on this host left.
func clearVMDir(dir string, disks []events.DiskSpec) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	names := []string{"ir.json"}
	for _, d := range disks {
		names = append(names, d.Name+".img", d.Name+".img.hrl", d.Name+".img.hashtree")
	}
	for _, n := range names {
		if err := os.Remove(filepath.Join(dir, n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// openPromoted opens the materialized images as tracked disks whose
// cycles start at 1, and records the initial replication as done (there
// is none in the new direction: the other side keeps its disk). A
// materialized point has no change log and needs none (NewLog): its
// tracking starts here, it is not lost.
func (c *vmCtl) openPromoted(vm events.VM, enableSeq, epoch uint64) error {
	src := &sourceSide{ship: shipState{sentAt: map[uint64]time.Time{}}}
	for _, spec := range vm.Disks {
		d, err := disk.Open(filepath.Join(c.a.vmDir(vm.Name), spec.Name+".img"), spec.Size, disk.Options{
			Name: spec.Name, BootID: c.a.cfg.DiskBootID, NewLog: true, Logger: c.logger,
		})
		if err == nil {
			src.disks = append(src.disks, d)
			err = d.ResetAfterResync(1)
		}
		if err != nil {
			return errors.Join(fmt.Errorf("promoted disk %s: %w", spec.Name, err), src.close(nil))
		}
	}
	st := irState{EnableSeq: enableSeq, Epoch: epoch, Next: 1, ReadDone: true}
	if err := saveJSON(c.irPath(), st); err != nil {
		return errors.Join(err, src.close(nil))
	}
	c.src = src
	return nil
}

// servePromoted serves the promoted disks and reports failover_ready.
func (c *vmCtl) servePromoted(ctx context.Context, vm events.VM) error {
	if c.src == nil {
		if err := c.openDisks(vm); err != nil {
			return err
		}
	}
	if err := c.startServing(ctx, vm); err != nil {
		return err
	}
	c.reportReady(ctx, vm)
	return nil
}

// reportReady reports failover_ready while the VM waits for it, and once
// after a change of recovery point.
func (c *vmCtl) reportReady(ctx context.Context, vm events.VM) {
	st := c.fo.st
	if st.Promoted == 0 || c.src == nil {
		return
	}
	waiting := vm.State == events.PlannedFailoverInProgress || vm.State == events.UnplannedFailoverInProgress
	if !waiting && (vm.State != events.FailoverCommitPending || c.fo.readyPoint == st.PromotedPoint) {
		return
	}
	body := agentproto.FailoverReadyReport{
		ReportHead:    agentproto.ReportHead{CommandID: fmt.Sprintf("ready-%s-%d-%s", c.name, st.PromotedStart, st.PromotedPoint), VM: c.name, Epoch: st.Promoted},
		RecoveryPoint: st.PromotedPoint, Disks: c.readyDisks(),
	}
	if c.reportNow(ctx, "ready:"+st.PromotedPoint, agentproto.VerbFailoverReady, body) {
		c.fo.readyPoint = st.PromotedPoint
	}
}

func (c *vmCtl) readyDisks() []agentproto.ReadyDisk {
	var out []agentproto.ReadyDisk
	for _, d := range c.src.disks {
		out = append(out, agentproto.ReadyDisk{Disk: d.Name(), Image: d.Path(), NBDURL: nbd.URL(ExportName(c.name, d.Name()), c.a.SocketPath())})
	}
	return out
}

// demote stops serving promoted disks of a failover that failed or was
// cancelled and deletes them: the replica role goes on.
func (c *vmCtl) demote(vm events.VM) error {
	c.stopServing(context.Background(), vm)
	if c.src != nil {
		if err := c.src.close(c.a.nbd); err != nil {
			return err
		}
		c.src = nil
	}
	if err := clearVMDir(c.a.vmDir(vm.Name), vm.Disks); err != nil {
		return err
	}
	c.logger.Info().Uint64("epoch", c.fo.st.Promoted).Msg("promoted disks dropped: back to the replica role")
	c.fo.st.Promoted, c.fo.st.PromotedPoint, c.fo.st.PromotedStart, c.fo.st.SrcEpoch = 0, "", 0, 0
	c.fo.trees = nil
	return c.saveFailover()
}

// dropOldReplica deletes the replica after the failover is committed: the
// promoted disks are the VM's disks now.
func (c *vmCtl) dropOldReplica(vm events.VM) error {
	start := c.fo.st.PromotedStart
	c.dropLeaves()
	if c.rcv != nil {
		if err := c.rcv.close(); err != nil {
			return err
		}
		c.rcv = nil
	}
	if err := errors.Join(os.RemoveAll(c.a.replicaDir(vm.Name)), os.Remove(c.receiveStatePath())); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	c.fo.st.OldReplicaDropped, c.fo.st.Promoted, c.fo.st.PromotedStart = start, 0, 0
	return c.saveFailover()
}

// purgeDeltas drops the VM's batches still in its delta stream: the
// replica stops applying them, and a later epoch starts afresh.
func (c *vmCtl) purgeDeltas(ctx context.Context, vm events.VM) error {
	if vm.TargetSite == "" {
		return nil
	}
	err := c.a.tr.Deltas.Purge(ctx, vm.TargetSite, vm.Name)
	if errors.Is(err, ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("purge deltas of %s: %w", vm.Name, err)
	}
	return nil
}
