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
	"github.com/siterecovery/siterecovery/hostsync/replica"
	"github.com/siterecovery/siterecovery/hostsync/sparse"
)

// Fencing. A former source never serves the VM once a failover completed
// elsewhere: it removes its exports, and after an unplanned failover it
// measures its divergence (the blocks written after the recovery point the
// failover used, from its change log), copies each divergent disk aside to
// <data>/aside/<vm>/<epoch>/<disk>.img and reports divergence, all before
// reverse replication makes its disk the replica and overwrites it. A
// former source that wrote nothing after the point (its last cycles had
// shipped) has not diverged: it sets nothing aside and reports nothing.

// divergenceBlock is the unit divergence is counted in.
const divergenceBlock = 4 << 10

// formerSource keeps a former source fenced and sets its divergence aside.
func (c *vmCtl) formerSource(ctx context.Context, vm events.VM) error {
	if err := c.fence(ctx, vm); err != nil {
		return err
	}
	return c.setAside(ctx, vm)
}

// setAside measures, copies aside and reports the divergence once per old
// epoch, after an unplanned failover.
func (c *vmCtl) setAside(ctx context.Context, vm events.VM) error {
	old := c.fo.st.SrcEpoch
	if vm.FailoverMode != events.FailoverUnplanned || old == 0 || old >= vm.Epoch || c.fo.st.AsideEpoch == old {
		return nil
	}
	if c.src == nil {
		if err := c.openDisks(vm); err != nil {
			return err
		}
	}
	_, pointCycle, err := parsePointID(vm.FailoverPoint)
	if err != nil && vm.FailoverPoint != "" {
		return err
	}
	blocks, aside, err := c.divergence(ctx, vm, old, pointCycle)
	if err != nil {
		return err
	}
	if blocks == 0 {
		c.fo.st.AsideEpoch, c.fo.st.DivergenceSent, c.fo.st.Divergence = old, true, agentproto.DivergenceReport{}
		if err := c.saveFailover(); err != nil {
			return err
		}
		c.logger.Info().Uint64("epoch", old).Str("point", vm.FailoverPoint).
			Msg("former source: no divergence (nothing written after the failover's recovery point), nothing set aside")
		return nil
	}
	c.fo.st.AsideEpoch, c.fo.st.DivergenceSent = old, false
	c.fo.st.Divergence = agentproto.DivergenceReport{
		ReportHead: agentproto.ReportHead{CommandID: fmt.Sprintf("divergence-%s-%s-%d", c.a.cfg.Host, c.name, old), VM: c.name, Epoch: old},
		Blocks:     blocks, AsideImages: aside,
	}
	if err := c.saveFailover(); err != nil {
		return err
	}
	c.logger.Warn().Int64("blocks", blocks).Uint64("epoch", old).Str("point", vm.FailoverPoint).Interface("aside", aside).
		Msg("former source diverged: blocks written after the failover's recovery point, disks set aside")
	return c.reportDivergence(ctx)
}

// reportDivergence reports the divergence set aside until it is taken.
func (c *vmCtl) reportDivergence(ctx context.Context) error {
	if c.fo.st.AsideEpoch == 0 || c.fo.st.DivergenceSent {
		return nil
	}
	if !c.due("report:divergence", reportRetry) {
		return nil
	}
	err := c.a.rep.report(ctx, agentproto.VerbDivergence, c.fo.st.Divergence)
	var refused *ReportError
	switch {
	case errors.As(err, &refused):
		c.logger.Error().Err(err).Msg("divergence report refused: not sent again")
	case err != nil:
		return nil // no control plane: sent again later
	}
	c.fo.st.DivergenceSent = true
	return c.saveFailover()
}

// divergence closes the open cycle and counts the blocks of the cycles
// after pointCycle, per disk; each disk with any is copied aside.
func (c *vmCtl) divergence(ctx context.Context, vm events.VM, epoch, pointCycle uint64) (int64, map[string]string, error) {
	var total int64
	aside := map[string]string{}
	for _, d := range c.src.disks {
		n, err := diskDivergence(d, pointCycle)
		if err != nil {
			return 0, nil, fmt.Errorf("divergence of disk %s: %w", d.Name(), err)
		}
		if n == 0 {
			continue
		}
		total += n
		dst := filepath.Join(c.a.cfg.DataDir, "aside", vm.Name, fmt.Sprint(epoch), d.Name()+".img")
		if err := copyImage(ctx, d.Path(), dst, d.Size()); err != nil {
			return 0, nil, fmt.Errorf("set disk %s aside: %w", d.Name(), err)
		}
		aside[d.Name()] = dst
	}
	return total, aside, nil
}

// diskDivergence counts the blocks changed in the cycles after pointCycle
// (the open one closed first). A log that cannot be trusted counts the
// whole disk.
func diskDivergence(d *disk.Tracked, pointCycle uint64) (int64, error) {
	if bad, _ := d.NeedsResync(); bad {
		return (d.Size() + divergenceBlock - 1) / divergenceBlock, nil
	}
	if _, err := d.CloseCycle(time.Now(), false); err != nil {
		return 0, err
	}
	blocks := map[int64]bool{}
	for _, seq := range d.Pending() {
		if seq <= pointCycle {
			continue
		}
		cyc, err := d.Cycle(seq)
		if err != nil {
			return 0, err
		}
		for _, e := range cyc.Extents {
			for b := e.Offset / divergenceBlock; b*divergenceBlock < e.End(); b++ {
				blocks[b] = true
			}
		}
	}
	return int64(len(blocks)), nil
}

// copyImage copies a sparse image durably (temp file, fsync, rename).
func copyImage(ctx context.Context, src, dst string, size int64) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	err = sparse.Copy(ctx, out, in, size)
	if err == nil {
		err = out.Sync()
	}
	if err = errors.Join(err, out.Close()); err != nil {
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		return err
	}
	return disk.SyncDir(filepath.Dir(dst))
}

// parsePointID splits rp-<epoch>-<cycle>.
func parsePointID(id string) (epoch, cycle uint64, err error) {
	if _, err := fmt.Sscanf(id, "rp-%d-%d", &epoch, &cycle); err != nil || replica.PointID(epoch, cycle) != id {
		return 0, 0, fmt.Errorf("%w: %q", ErrBadRecoveryPoint, id)
	}
	return epoch, cycle, nil
}

// reverseRecovery is the new recovery host's part of reverse replication:
// its old disks (the final point after a planned failover; set aside first
// after an unplanned one) become the replica, with no copy.
func (c *vmCtl) reverseRecovery(ctx context.Context, vm events.VM, enableSeq uint64) (bool, error) {
	key := c.fo.info.reverseSeq
	if c.fo.st.ReplicaFrom == key {
		return false, nil
	}
	if err := c.formerSource(ctx, vm); err != nil {
		return true, err
	}
	return true, c.becomeReplica(vm, enableSeq, key)
}

// becomeReplica moves the VM's images into a fresh replica directory.
func (c *vmCtl) becomeReplica(vm events.VM, enableSeq, key uint64) error {
	if c.src != nil {
		if err := c.src.close(c.a.nbd); err != nil {
			return err
		}
		c.src = nil
	}
	c.dropLeaves()
	if c.rcv != nil {
		if err := c.rcv.close(); err != nil {
			return err
		}
		c.rcv = nil
	}
	rdir := c.a.replicaDir(vm.Name)
	if c.fo.st.Converting != key {
		if err := os.RemoveAll(rdir); err != nil {
			return err
		}
		c.fo.st.Converting = key
		if err := c.saveFailover(); err != nil {
			return err
		}
	}
	if err := moveImages(c.a.vmDir(vm.Name), rdir, vm.Disks); err != nil {
		return err
	}
	if err := saveJSON(c.receiveStatePath(), receiveState{EnableSeq: enableSeq}); err != nil {
		return err
	}
	c.fo.st.ReplicaFrom, c.fo.st.SrcEpoch, c.fo.trees = key, 0, nil
	c.logger.Info().Msg("old disks turned into the replica for reverse replication")
	return c.saveFailover()
}

// moveImages renames the images (dropping their change logs) into dst.
func moveImages(src, dst string, disks []events.DiskSpec) error {
	if err := os.MkdirAll(dst, 0o750); err != nil {
		return err
	}
	for _, d := range disks {
		from, to := filepath.Join(src, d.Name+".img"), filepath.Join(dst, d.Name+".img")
		if _, err := os.Stat(from); errors.Is(err, os.ErrNotExist) {
			continue // moved before a crash, or never here: the resync fills it
		}
		if err := os.Rename(from, to); err != nil {
			return err
		}
	}
	if err := clearVMDir(src, disks); err != nil {
		return err
	}
	return errors.Join(disk.SyncDir(src), disk.SyncDir(dst))
}
