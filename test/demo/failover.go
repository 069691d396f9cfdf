package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/siterecovery/siterecovery/hostsync"
	"github.com/siterecovery/siterecovery/projections"
	"github.com/siterecovery/siterecovery/test/world"
)

// The demo's failover stages: a test failover, a planned failover of a
// recovery plan with commit and automatic reverse replication, a failback,
// then an unplanned failover after the primary host dies, fencing and a
// reverse replication by resync. Every stage checks the bytes.

// quiesced waits until every VM's newest recovery point was closed after
// now, so the replicas equal the sources (no writes are running).
func (d *Demo) quiesced(ctx context.Context, vms []string) error {
	now := time.Now()
	return world.Parallel(vms, func(vm string) error {
		_, err := d.WaitVM(ctx, vm, "a recovery point after the writes", 60*time.Second, func(v projections.VMView) bool {
			n := len(v.RecoveryPoints)
			return n > 0 && v.RecoveryPoints[n-1].Time.After(now)
		}, nil)
		return err
	})
}

// CheckServedEquals reads the VM's disk where it is served now and compares
// it with want (an image file).
func (d *Demo) CheckServedEquals(v projections.VMView, want string) error {
	for _, disk := range v.Disks {
		if disk.NBDURL == "" {
			return fmt.Errorf("%s: disk %s is not served", v.Name, disk.Name)
		}
		got, err := world.ReadExport(disk.NBDURL, disk.Size)
		if err != nil {
			return fmt.Errorf("%s: read %s: %w", v.Name, disk.NBDURL, err)
		}
		exp, err := os.ReadFile(want)
		if err != nil {
			return err
		}
		if !bytes.Equal(got, exp) {
			return fmt.Errorf("%s: the disk served at %s differs from %s", v.Name, disk.NBDURL, want)
		}
	}
	return nil
}

// testFailover runs a test failover of web01, writes into the test copy
// and checks the replica did not move.
func (d *Demo) testFailover(ctx context.Context) error {
	d.stage("test failover of web01: a copy-on-write copy on hv02; replication goes on")
	before, err := d.VM("web01")
	if err != nil {
		return err
	}
	replica := before.Disks[0].ReplicaImage
	orig, err := os.ReadFile(replica)
	if err != nil {
		return err
	}
	start := time.Now()
	if _, err := d.CLI("vm", "test-failover", "web01", "--network", "lan-test", "--wait"); err != nil {
		return err
	}
	v, err := d.WaitVM(ctx, "web01", "test disks served", 30*time.Second, func(v projections.VMView) bool {
		return v.TestFailover != nil && len(v.TestFailover.Disks) > 0 && v.TestFailover.Disks[0].NBDURL != ""
	}, nil)
	if err != nil {
		return err
	}
	td := v.TestFailover.Disks[0]
	got, err := world.ReadExport(td.NBDURL, before.Disks[0].Size)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, orig) {
		return errors.New("web01: the test copy differs from the recovery point it was made from")
	}
	c, err := world.DialURL(td.NBDURL)
	if err != nil {
		return err
	}
	scribble := bytes.Repeat([]byte("test-vm "), 8192)
	err = errors.Join(c.WriteAt(scribble, 0, true), c.Close())
	if err != nil {
		return fmt.Errorf("web01: write to the test copy: %w", err)
	}
	after, err := os.ReadFile(replica)
	if err != nil {
		return err
	}
	if !bytes.Equal(after, orig) {
		return errors.New("web01: writing the test copy changed the replica")
	}
	d.say("verified: test VM of web01 served at %s, equal to point %s; its writes left the replica untouched (%s)",
		td.NBDURL, v.TestFailover.RecoveryPoint, time.Since(start).Round(time.Millisecond))
	if _, err := d.CLI("vm", "test-cleanup", "web01", "--wait"); err != nil {
		return err
	}
	_, err = d.WaitVM(ctx, "web01", "test cleaned up", 30*time.Second, func(v projections.VMView) bool {
		return v.TestFailoverState == "None"
	}, nil)
	return err
}

// plannedFailover moves the recovery plan to the other site, commits, and
// waits for the automatic reverse replication.
func (d *Demo) plannedFailover(ctx context.Context, fromHost, to string) error {
	d.stage(fmt.Sprintf("planned failover of recovery plan shop (web01,web02 then db01) from %s to site %s", fromHost, to))
	sources := map[string]string{}
	for _, vm := range demoVMs {
		v, err := d.VM(vm)
		if err != nil {
			return err
		}
		sources[vm] = v.Disks[0].Image
	}
	start := time.Now()
	if _, err := d.CLI("plan", "planned-failover", "shop", "--wait"); err != nil {
		return err
	}
	took := time.Since(start)
	for _, vm := range demoVMs {
		v, err := d.WaitVM(ctx, vm, "running at "+to, 30*time.Second, func(v projections.VMView) bool {
			return v.ActiveSite == to && len(v.Disks) > 0 && v.Disks[0].NBDURL != ""
		}, nil)
		if err != nil {
			return err
		}
		if err := d.CheckServedEquals(v, sources[vm]); err != nil {
			return err
		}
		if err := d.NotServed(fromHost, vm); err != nil {
			return err
		}
		d.say("verified: %s runs at %s (epoch %d), its disk equals the source's last state: no data lost; %s no longer serves it",
			vm, to, v.Epoch, fromHost)
	}
	d.say("planned failover of the plan took %s", took.Round(time.Millisecond))
	shippedBefore := map[string]int64{}
	for _, vm := range demoVMs {
		n, err := d.shippedBytes(vm)
		if err != nil {
			return err
		}
		shippedBefore[vm] = n
	}
	if _, err := d.CLI("plan", "commit", "shop", "--wait"); err != nil {
		return err
	}
	return world.Parallel(demoVMs, func(vm string) error {
		v, err := d.WaitVM(ctx, vm, "protected in the new direction", 90*time.Second, func(v projections.VMView) bool {
			return v.ProtectionState == "Protected" && v.ActiveSite == to && v.SourceHost != "" && len(v.RecoveryPoints) > 0
		}, nil)
		if err != nil {
			return err
		}
		shipped, err := d.shippedBytes(vm)
		if err != nil {
			return err
		}
		reverse := shipped - shippedBefore[vm]
		if size := v.Disks[0].Size; reverse >= size/2 {
			return fmt.Errorf("%s: reverse replication shipped %s of a %s disk: a full copy", vm, InMiB(reverse), InMiB(size))
		}
		d.say("verified: %s committed; reverse replication %s → %s started by itself and shipped %s, no full copy",
			vm, v.SourceHost, v.RecoveryHost, InMiB(reverse))
		return nil
	})
}

// NotServed checks that host does not serve the VM's disk.
func (d *Demo) NotServed(host, vm string) error {
	a := d.w.Agent(host)
	if a == nil {
		return nil
	}
	for _, e := range a.Exports() {
		if e == hostsync.ExportName(vm, "disk0") {
			return fmt.Errorf("%s: %s still serves %s after the failover", vm, host, e)
		}
	}
	return nil
}

// unplanned writes on every VM, waits for a point, kills the primary host
// and fails web01 and web02 over to the latest point; then brings the dead
// host back (fenced), commits and reverses by resync.
func (d *Demo) unplanned(ctx context.Context) error {
	d.stage("unplanned failover: writes, a recovery point, then host hv01 dies (its agent killed)")
	if _, err := d.writeFor(3 * time.Second); err != nil {
		return err
	}
	if err := d.quiesced(ctx, demoVMs); err != nil {
		return err
	}
	images := map[string]string{}
	for _, vm := range demoVMs {
		v, err := d.VM(vm)
		if err != nil {
			return err
		}
		images[vm] = v.Disks[0].Image
	}
	if err := d.KillAgent("hv01"); err != nil {
		return err
	}
	d.say("hv01 is down: its disks stay on its (dead) storage, nothing more leaves it")
	start := time.Now()
	if _, err := d.CLI("plan", "unplanned-failover", "shop", "--wait"); err != nil {
		return err
	}
	for _, vm := range demoVMs {
		v, err := d.WaitVM(ctx, vm, "running at secondary", 60*time.Second, func(v projections.VMView) bool {
			return v.ActiveSite == "secondary" && len(v.Disks) > 0 && v.Disks[0].NBDURL != ""
		}, nil)
		if err != nil {
			return err
		}
		if err := d.CheckServedEquals(v, images[vm]); err != nil {
			return err
		}
		d.say("verified: %s runs at secondary (epoch %d) from the latest recovery point %s, equal to hv01's disk at that point",
			vm, v.Epoch, v.FailoverRecoveryPoint)
	}
	d.say("unplanned failover of the plan took %s, with nothing from the failed site", time.Since(start).Round(time.Millisecond))
	d.stage("the primary returns: fenced, then commit and reverse replication by resync")
	if err := d.StartAgent(ctx, "hv01"); err != nil {
		return err
	}
	for _, vm := range demoVMs {
		if err := d.NotServed("hv01", vm); err != nil {
			return err
		}
	}
	d.say("verified: hv01 is back and serves none of the VMs it lost (their epoch moved on)")
	if _, err := d.CLI("plan", "commit", "shop", "--wait"); err != nil {
		return err
	}
	d.say("reverse by resync: hv02 waits until hv01 has turned its old disks into the replica, compares their hash trees")
	d.say("with its own disks' and sends only the blocks that differ")
	if _, err := d.CLI("plan", "reverse", "shop", "--wait"); err != nil {
		return err
	}
	if err := world.Parallel(demoVMs, func(vm string) error { return d.verifyResynced(ctx, vm) }); err != nil {
		return err
	}
	return d.noDivergence("hv01")
}

// verifyResynced checks a VM protected again after the resync, its
// replica equal to the source, and says what the resync sent.
func (d *Demo) verifyResynced(ctx context.Context, vm string) error {
	v, err := d.WaitVM(ctx, vm, "protected again after the resync", 120*time.Second, func(v projections.VMView) bool {
		return v.ProtectionState == "Protected" && v.ActiveSite == "secondary" && len(v.RecoveryPoints) > 0
	}, nil)
	if err != nil {
		return err
	}
	same, err := world.SameBytes(v.Disks[0].Image, v.Disks[0].ReplicaImage)
	if err != nil {
		return err
	}
	if !same {
		return fmt.Errorf("%s: after the resync the replica on %s differs from the source", vm, v.RecoveryHost)
	}
	sent, err := d.lastSentBytes(vm, "reverse_replication_completed")
	if err != nil {
		return err
	}
	what := fmt.Sprintf("the resync sent %s of differing blocks", InMiB(sent))
	if sent == 0 {
		what = "the resync found no block differing (both sides still held the recovery point), so it sent none"
	}
	d.say("verified: %s protected %s → %s again; %s; the replica equals the source", vm, v.SourceHost, v.RecoveryHost, what)
	return nil
}

// noDivergence checks that the returning former source held no write after
// the recovery points the VMs were failed over to (the demo's writes had
// all shipped before the host died): no divergence, nothing set aside.
func (d *Demo) noDivergence(host string) error {
	for _, vm := range demoVMs {
		v, err := d.VM(vm)
		if err != nil {
			return err
		}
		if v.Divergence != nil {
			return fmt.Errorf("%s: %s diverged by %d blocks after the recovery point, though everything had shipped", vm, host, v.Divergence.Blocks)
		}
	}
	aside := filepath.Join(d.w.HostDir(host), "aside")
	if _, err := os.Stat(aside); !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s set disks aside in %s (err %v), though it had not diverged", host, aside, err)
	}
	d.say("verified: no divergence: %s had written nothing after the recovery points (its writes had all shipped), so nothing was set aside", host)
	return nil
}
