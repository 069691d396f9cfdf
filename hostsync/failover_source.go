package hostsync

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/agentproto"
	"github.com/siterecovery/siterecovery/hostsync/disk"
	"github.com/siterecovery/siterecovery/hostsync/hashtree"
	"github.com/siterecovery/siterecovery/hostsync/nbd"
)

// The source host's part of a failover: stop serving (a fence: RemoveExport
// returns once no request runs), flush, close a final cycle, ship it and
// report vm_stopped with the disks' hash tree roots at that cycle.

// plannedStop stops the VM for a planned failover and ships its final
// cycle.
func (c *vmCtl) plannedStop(ctx context.Context, vm events.VM, enableSeq uint64, ack cycleAck) error {
	if err := c.fence(ctx, vm); err != nil {
		return err
	}
	start := c.fo.info.startSeq
	if c.fo.st.FinalStart != start {
		seq, err := c.closeFinal()
		if err != nil {
			c.reportError(ctx, agentproto.CodeDiskFailed, err)
			return err
		}
		c.fo.st.FinalStart, c.fo.st.FinalCycle = start, seq
		if err := c.saveFailover(); err != nil {
			return err
		}
		c.logger.Info().Uint64("cycle", seq).Msg("final cycle closed for a planned failover")
	}
	c.updateTrees(vm)
	if err := c.ship(ctx, vm, enableSeq, ack); err != nil {
		return err
	}
	if c.fo.info.stopped != nil {
		return nil
	}
	roots, err := c.sourceRoots()
	if err != nil {
		return err
	}
	c.reportNow(ctx, fmt.Sprintf("vm-stopped:%d", start), agentproto.VerbVMStopped, agentproto.VMStoppedReport{
		ReportHead: agentproto.ReportHead{CommandID: fmt.Sprintf("stopped-%s-%d", c.name, start), VM: c.name, Job: c.fo.info.startJob, Epoch: vm.Epoch},
		FinalCycle: c.fo.st.FinalCycle, Roots: roots, RootsHash: hashtree.HashName,
	})
	return nil
}

// finalClosed says whether the planned failover under way has closed the
// epoch's final cycle: no cycle follows it. The disks are fenced, so one
// would be empty; shipped after the recovery host promoted and purged the
// VM's batches, it would stay in the stream, and be refused as stale the
// next time that host is the VM's recovery host.
func (c *vmCtl) finalClosed(vm events.VM) bool {
	start := c.fo.info.startSeq
	return vm.State == events.PlannedFailoverInProgress && start != 0 && c.fo.st.FinalStart == start
}

// closeFinal flushes the disks and closes a cycle on each.
func (c *vmCtl) closeFinal() (uint64, error) {
	var seq uint64
	now := time.Now()
	for _, d := range c.src.disks {
		if err := d.Flush(); err != nil {
			return 0, err
		}
		s, err := d.CloseCycle(now, false)
		if err != nil {
			return 0, err
		}
		seq = max(seq, s)
	}
	c.src.ship.lastClose = now
	return seq, nil
}

// unplannedStop fences the source of an unplanned failover that asked for
// it (best effort: the failover does not wait).
func (c *vmCtl) unplannedStop(ctx context.Context, vm events.VM) error {
	if err := c.fence(ctx, vm); err != nil {
		return err
	}
	if c.fo.info.stopped != nil {
		return nil
	}
	start := c.fo.info.startSeq
	c.reportNow(ctx, fmt.Sprintf("vm-stopped:%d", start), agentproto.VerbVMStopped, agentproto.VMStoppedReport{
		ReportHead: agentproto.ReportHead{CommandID: fmt.Sprintf("stopped-%s-%d", c.name, start), VM: c.name, Job: c.fo.info.startJob, Epoch: c.fo.info.startEpoch(vm)},
	})
	return nil
}

// startEpoch is the epoch the current failover started at.
func (in foldInfo) startEpoch(vm events.VM) uint64 {
	switch vm.State {
	case events.PlannedFailoverInProgress, events.UnplannedFailoverInProgress,
		events.PlannedFailoverFailed, events.UnplannedFailoverFailed:
		return vm.Epoch
	}
	return vm.Epoch - 1
}

// fence stops serving the VM's disks (opening them first after a restart,
// so nothing else can serve them).
func (c *vmCtl) fence(ctx context.Context, vm events.VM) error {
	if c.src == nil {
		if err := c.openDisks(vm); err != nil {
			return err
		}
	}
	c.stopServing(ctx, vm)
	return nil
}

// startServing exports the VM's disks and runs the VM start command.
func (c *vmCtl) startServing(ctx context.Context, vm events.VM) error {
	if err := c.setExported(true); err != nil {
		return err
	}
	c.driveVM(ctx, vm)
	return nil
}

// stopServing runs the VM stop command and removes the exports.
func (c *vmCtl) stopServing(ctx context.Context, vm events.VM) {
	if c.src == nil || !c.src.exported {
		return
	}
	c.runDriver(ctx, vm, false)
	if err := c.setExported(false); err != nil {
		c.logger.Warn().Err(err).Msg("remove nbd exports")
	}
}

// driveVM runs the VM start or stop command when serving changed. A
// recovery host starts the VM once the log names it active (with the
// failover's mapped networks), not when it starts serving the disks.
func (c *vmCtl) driveVM(ctx context.Context, vm events.VM) {
	served := c.src != nil && c.src.exported && vm.ActiveHost == c.a.cfg.Host
	if served != c.fo.served {
		c.runDriver(ctx, vm, served)
	}
}

// runDriver runs AgentConfig.VMStartCommand or VMStopCommand with SR_VM,
// SR_NBD_URLS (space separated) and SR_NETWORKS (comma separated) set.
func (c *vmCtl) runDriver(ctx context.Context, vm events.VM, start bool) {
	c.fo.served = start
	command := c.a.cfg.VMStopCommand
	if start {
		command = c.a.cfg.VMStartCommand
	}
	if command == "" || c.src == nil {
		return
	}
	var urls []string
	for _, d := range c.src.disks {
		urls = append(urls, nbd.URL(ExportName(c.name, d.Name()), c.a.SocketPath()))
	}
	c.runCommand(ctx, command, c.name, urls, c.networks(vm))
}

// runCommand runs a VM driver command (bounded to a minute), logging a
// failure: serving the disks does not depend on it.
func (c *vmCtl) runCommand(ctx context.Context, command, vm string, urls, networks []string) {
	if command == "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	cmd.Env = append(os.Environ(), "SR_VM="+vm, "SR_NBD_URLS="+strings.Join(urls, " "), "SR_NETWORKS="+strings.Join(networks, ","))
	if out, err := cmd.CombinedOutput(); err != nil {
		c.logger.Error().Err(err).Str("command", command).Str("output", string(out)).Msg("vm driver command failed")
	}
}

// networks are the VM's networks where it runs now: after a failover the
// mapped target networks (an unmapped NIC has none), else its own.
func (c *vmCtl) networks(vm events.VM) []string {
	if vm.ActiveHost != vm.SourceHost && c.fo.info.nics != nil {
		var out []string
		for _, n := range c.fo.info.nics {
			if n.TargetNetwork != "" {
				out = append(out, n.TargetNetwork)
			}
		}
		return out
	}
	return vm.Networks
}

// sourceTrees are the source disks' hash trees, current up to the closed
// cycle seen; updated with each closed cycle's extents, so their cost
// grows with the changes. They are saved beside the images
// (<disk>.img.hashtree, stamped with seen) after each update, before the
// cycles are acknowledged: every dropped cycle is in the saved tree, and a
// restart folds the pending ones in. Every reset of the change log (an
// initial replication, a resync, a promotion) deletes them.
type sourceTrees struct {
	trees map[string]*hashtree.Tree
	seen  uint64
}

// updateTrees folds the closed cycles not seen yet into the trees,
// building them from the images first when there are none. Called at the
// start of a pass, before shipping acknowledges (and drops) cycles.
func (c *vmCtl) updateTrees(vm events.VM) {
	if err := c.updateTreesErr(); err != nil {
		c.dropTrees()
		c.warnOnce("hash tree", err)
	}
}

func (c *vmCtl) updateTreesErr() error {
	if c.src == nil || len(c.src.disks) == 0 {
		return nil
	}
	fresh := c.fo.trees == nil
	if fresh && !c.loadTrees() {
		if err := c.buildTrees(); err != nil {
			return err
		}
	}
	t := c.fo.trees
	seen := t.seen
	for _, seq := range c.src.disks[0].Pending() {
		if seq <= t.seen {
			continue
		}
		for _, d := range c.src.disks {
			if err := updateDiskTree(t.trees[d.Name()], d, seq); err != nil {
				return err
			}
		}
		t.seen = seq
	}
	if !fresh && seen == t.seen {
		return nil
	}
	for _, d := range c.src.disks {
		if err := t.trees[d.Name()].Save(d.Path()+".hashtree", treeStamp(t.seen)); err != nil {
			return err
		}
	}
	return nil
}

func treeStamp(seen uint64) string { return fmt.Sprintf("seen=%d", seen) }

// loadTrees loads the saved trees if every disk has one of the same cycle.
func (c *vmCtl) loadTrees() bool {
	t := &sourceTrees{trees: map[string]*hashtree.Tree{}}
	stamp := ""
	for _, d := range c.src.disks {
		tree, st, err := hashtree.Load(d.Path() + ".hashtree")
		if errors.Is(err, hashtree.ErrVersion) {
			c.logger.Info().Err(err).Str("disk", d.Name()).Str("hash", hashtree.HashName).
				Msg("hash tree file of another version (an older build's hash): rebuilding it from the image")
		}
		if err != nil || tree.Size() != d.Size() || (stamp != "" && st != stamp) {
			return false
		}
		stamp, t.trees[d.Name()] = st, tree
	}
	if _, err := fmt.Sscanf(stamp, "seen=%d", &t.seen); err != nil {
		return false
	}
	c.fo.trees = t
	return true
}

// dropTrees forgets the trees and deletes their files (the change log was
// reset, or they failed).
func (c *vmCtl) dropTrees() {
	c.fo.trees = nil
	if c.src == nil {
		return
	}
	c.src.integrity().forget() // integrity.go: the kept trees and roots go too
	for _, d := range c.src.disks {
		if err := os.Remove(d.Path() + ".hashtree"); err != nil && !errors.Is(err, os.ErrNotExist) {
			c.logger.Warn().Err(err).Msg("remove source hash tree")
		}
	}
}

func updateDiskTree(t *hashtree.Tree, d *disk.Tracked, seq uint64) error {
	cyc, err := d.Cycle(seq)
	if err != nil {
		return err
	}
	f, err := os.Open(d.Path())
	if err != nil {
		return err
	}
	defer f.Close()
	return t.Update(f, cyc.Extents)
}

// buildTrees hashes the source images whole. Cycles closed before are
// covered by the read; later ones are folded in by updateTrees.
func (c *vmCtl) buildTrees() error {
	t := &sourceTrees{trees: map[string]*hashtree.Tree{}}
	if p := c.src.disks[0].Pending(); len(p) > 0 {
		t.seen = p[len(p)-1]
	}
	for _, d := range c.src.disks {
		tree, err := hashtree.BuildFile(d.Path(), d.Size())
		if err != nil {
			return err
		}
		t.trees[d.Name()] = tree
	}
	c.fo.trees = t
	return nil
}

// sourceRoots are the source disks' roots now (after every closed cycle).
func (c *vmCtl) sourceRoots() (map[string]string, error) {
	if err := c.updateTreesErr(); err != nil {
		c.dropTrees()
		return nil, err
	}
	if c.fo.trees == nil {
		return nil, errors.New("no source hash trees")
	}
	out := map[string]string{}
	for name, t := range c.fo.trees.trees {
		out[name] = t.Root()
	}
	return out, nil
}
