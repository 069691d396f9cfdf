package hostsync

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/agentproto"
	"github.com/siterecovery/siterecovery/hostsync/nbd"
	"github.com/siterecovery/siterecovery/hostsync/replica"
)

// Test failover: the recovery host serves a copy-on-write view of a
// recovery point (Replica.TestCopy: the replica is never written, and
// replication goes on) as the exports <vm>-<disk>-test, until cleanup. The
// VM driver commands start and stop the test VM as <vm>-test, on the test
// network only (none when the test asked for none).

// A test copy's disk is what the NBD server serves.
var _ nbd.ExportDisk = (*replica.TestDisk)(nil)

// testSide is a running test failover.
type testSide struct {
	view    *replica.TestView
	exports []string
}

// TestExportName is the NBD export name of a VM disk's test copy.
func TestExportName(vm, disk string) string { return vm + "-" + disk + "-test" }

func (c *vmCtl) testDir() string { return filepath.Join(c.a.cfg.DataDir, "tests", c.name) }

// reconcileTest brings the test copy in line with the VM's test sub-state.
func (c *vmCtl) reconcileTest(ctx context.Context, vm events.VM) {
	mine := vm.RecoveryHost == c.a.cfg.Host
	var err error
	switch vm.TestState {
	case events.TestInProgress, events.TestCompleted:
		if mine {
			err = c.startTest(ctx, vm)
		}
	case events.TestCleaningUp:
		if mine {
			err = c.removeTest()
			if err == nil {
				c.reportNow(ctx, "test-cleanup", agentproto.VerbTestCleanupDone, testCleanupBody(c.name, vm.Epoch, vm.Version))
			}
		}
	default:
		err = c.removeTest() // none (or timed out): drop a partial copy
	}
	if err != nil && ctx.Err() == nil {
		c.warnOnce("test failover", err)
	}
}

func testCleanupBody(vm string, epoch, version uint64) agentproto.TestCleanupDoneReport {
	return agentproto.TestCleanupDoneReport{ReportHead: agentproto.ReportHead{CommandID: fmt.Sprintf("test-cleanup-%s-%d", vm, version), VM: vm, Epoch: epoch}}
}

// startTest creates and serves the test copy and reports it while the
// test is in progress.
func (c *vmCtl) startTest(ctx context.Context, vm events.VM) error {
	point := c.fo.info.testPoint
	if c.fo.test == nil {
		if c.rcv == nil || c.rcv.replica == nil || point == "" {
			return nil // the replica opens in this pass; next pass
		}
		if err := c.openTest(point, vm); err != nil {
			return err
		}
		c.runCommand(ctx, c.a.cfg.VMStartCommand, c.name+"-test", c.testURLs(), c.testNetworks())
	}
	if vm.TestState != events.TestInProgress {
		return nil
	}
	var disks []agentproto.ReadyDisk
	for _, d := range vm.Disks {
		disks = append(disks, agentproto.ReadyDisk{
			Disk: d.Name, Image: filepath.Join(c.testDir(), d.Name+".overlay"),
			NBDURL: nbd.URL(TestExportName(c.name, d.Name), c.a.SocketPath()),
		})
	}
	c.reportNow(ctx, "test-ready:"+point, agentproto.VerbTestFailoverReady, agentproto.TestFailoverReadyReport{
		ReportHead: agentproto.ReportHead{CommandID: fmt.Sprintf("test-ready-%s-%s-%d", c.name, point, vm.Epoch), VM: c.name, Epoch: vm.Epoch},
		Disks:      disks,
	})
	return nil
}

func (c *vmCtl) testURLs() []string {
	var urls []string
	for _, name := range c.fo.test.exports {
		urls = append(urls, nbd.URL(name, c.a.SocketPath()))
	}
	return urls
}

func (c *vmCtl) testNetworks() []string {
	if c.fo.info.testNet == "" || c.fo.info.testNet == "none" {
		return nil
	}
	return []string{c.fo.info.testNet}
}

func (c *vmCtl) openTest(point string, vm events.VM) error {
	view, err := c.rcv.replica.TestCopy(point, c.testDir())
	if err != nil {
		return fmt.Errorf("test copy of %s: %w", point, err)
	}
	t := &testSide{view: view}
	for _, d := range vm.Disks {
		name := TestExportName(c.name, d.Name)
		if err := c.a.nbd.AddExport(name, view.Disk(d.Name)); err != nil {
			c.fo.test = t
			return errors.Join(err, c.removeTest())
		}
		t.exports = append(t.exports, name)
	}
	c.fo.test = t
	c.logger.Info().Str("point", point).Msg("test failover copy served")
	return nil
}

// removeTest removes the test exports and the copy. Safe when there is
// none.
func (c *vmCtl) removeTest() error {
	t := c.fo.test
	if t == nil {
		return nil
	}
	c.runCommand(context.Background(), c.a.cfg.VMStopCommand, c.name+"-test", c.testURLs(), c.testNetworks())
	var errs []error
	for _, name := range t.exports {
		if err := c.a.nbd.RemoveExport(name); err != nil && !errors.Is(err, nbd.ErrExportNotFound) {
			errs = append(errs, err)
		}
	}
	errs = append(errs, t.view.Remove())
	if err := os.RemoveAll(c.testDir()); err != nil {
		errs = append(errs, err)
	}
	c.fo.test = nil
	c.logger.Info().Msg("test failover copy removed")
	return errors.Join(errs...)
}
