package soak

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/siterecovery/siterecovery/projections"
	"github.com/siterecovery/siterecovery/test/demo"
	"github.com/siterecovery/siterecovery/test/world"
)

// cycle: random writes at the primary, checked on the replicas; a planned
// (or every UnplannedEvery-th cycle an unplanned) failover to the secondary; random
// writes there, checked on the replicas the reverse replication keeps at
// the primary; a planned failback.
func (s *soak) cycle(ctx context.Context) error {
	if err := s.writeAndVerify(ctx); err != nil {
		return err
	}
	if n := s.cfg.UnplannedEvery; n > 0 && s.stat.Cycles%n == n-1 {
		if err := s.unplanned(ctx); err != nil {
			return err
		}
		s.stat.Unplanned++
	} else {
		if err := s.planned(ctx, "hv01", "secondary"); err != nil {
			return err
		}
		s.stat.Planned++
	}
	if err := s.writeAndVerify(ctx); err != nil {
		return err
	}
	if err := s.planned(ctx, "hv02", "primary"); err != nil {
		return err
	}
	s.stat.Failbacks++
	return nil
}

// writeAndVerify runs a random workload (256 KiB to 1 MiB/s, 2 to 5 s) on
// every VM where it runs, watching the RPO, then checks each replica
// equals its source byte for byte at a recovery point closed after the
// writes stopped.
func (s *soak) writeAndVerify(ctx context.Context) error {
	d := s.d
	loads := map[string]*world.Workload{}
	stopAll := func() error {
		var errs []error
		for _, w := range loads {
			errs = append(errs, w.Stop())
			s.stat.Written += w.Written()
		}
		clear(loads)
		return errors.Join(errs...)
	}
	for _, vm := range s.vms {
		v, err := d.VM(vm)
		if err != nil {
			return errors.Join(err, stopAll())
		}
		w, err := world.StartWorkload(v, (256<<10)+s.rng.Int64N(768<<10))
		if err != nil {
			return errors.Join(err, stopAll())
		}
		loads[vm] = w
	}
	for range 2 + s.rng.IntN(4) {
		if err := s.watchRPO(ctx); err != nil {
			return errors.Join(err, stopAll())
		}
	}
	if err := stopAll(); err != nil {
		return err
	}
	stopped := time.Now()
	if err := world.Parallel(s.vms, func(vm string) error { return d.VerifyReplica(ctx, vm, stopped, 0, -1) }); err != nil {
		return err
	}
	s.stat.Verified += len(s.vms)
	v, err := d.VM(s.vms[0])
	if err != nil {
		return err
	}
	s.step("writes at %s replicated: %d replicas equal their sources (%s written so far, max RPO %ds)",
		v.ActiveSite, len(s.vms), demo.InMiB(s.stat.Written), s.stat.MaxRPO)
	return nil
}

// watchRPO waits a second (the workload runs meanwhile) and records the
// highest RPO of the VMs.
func (s *soak) watchRPO(ctx context.Context) error {
	if err := world.Sleep(ctx, time.Second); err != nil {
		return err
	}
	for _, vm := range s.vms {
		v, err := s.d.VM(vm)
		if err != nil {
			return err
		}
		if v.RPOSeconds != nil {
			s.stat.MaxRPO = max(s.stat.MaxRPO, *v.RPOSeconds)
		}
	}
	return nil
}

// planned fails the plan over from fromHost to site to: every VM's disk
// served there must equal its source's last state, fromHost must not serve
// it; then commit and wait for the reverse replication.
func (s *soak) planned(ctx context.Context, fromHost, to string) error {
	d := s.d
	sources, err := s.sourceImages()
	if err != nil {
		return err
	}
	start := time.Now()
	if _, err := s.plan("planned-failover"); err != nil {
		return err
	}
	if err := s.checkRunningAt(ctx, to, sources); err != nil {
		return err
	}
	for _, vm := range s.vms {
		if err := d.NotServed(fromHost, vm); err != nil {
			return err
		}
	}
	took := time.Since(start)
	if _, err := s.plan("commit"); err != nil {
		return err
	}
	if err := s.waitProtected(ctx, to); err != nil {
		return err
	}
	s.step("planned failover %s → %s in %s: %d disks equal their sources' last state; committed, reverse replication running",
		fromHost, to, took.Round(time.Millisecond), len(s.vms))
	return nil
}

// unplanned: hv01 dies (its agent stopped with no goodbye), the plan fails
// over to the latest points at the secondary, each served disk must equal
// hv01's disk at that point; hv01 comes back fenced; commit, reverse by
// resync, and each replica must equal its source.
func (s *soak) unplanned(ctx context.Context) error {
	d := s.d
	images, err := s.sourceImages()
	if err != nil {
		return err
	}
	if err := d.KillAgent("hv01"); err != nil {
		return err
	}
	start := time.Now()
	if _, err := s.plan("unplanned-failover"); err != nil {
		return err
	}
	if err := s.checkRunningAt(ctx, "secondary", images); err != nil {
		return err
	}
	took := time.Since(start)
	if err := d.StartAgent(ctx, "hv01"); err != nil {
		return err
	}
	for _, vm := range s.vms {
		if err := d.NotServed("hv01", vm); err != nil {
			return err
		}
	}
	for _, verb := range []string{"commit", "reverse"} {
		if _, err := s.plan(verb); err != nil {
			return err
		}
	}
	if err := s.waitProtected(ctx, "secondary"); err != nil {
		return err
	}
	if err := world.Parallel(s.vms, func(vm string) error {
		v, err := d.VM(vm)
		if err != nil {
			return err
		}
		same, err := world.SameBytes(v.Disks[0].Image, v.Disks[0].ReplicaImage)
		if err == nil && !same {
			err = fmt.Errorf("%s: after the resync the replica on %s differs from the source", vm, v.RecoveryHost)
		}
		return err
	}); err != nil {
		return err
	}
	s.stat.Verified += len(s.vms)
	s.step("unplanned failover after hv01 died in %s: %d disks equal hv01's at the latest point; hv01 back fenced, reversed by resync, replicas equal",
		took.Round(time.Millisecond), len(s.vms))
	return nil
}

// sourceImages maps each VM to the image of its disk0 where it runs now.
func (s *soak) sourceImages() (map[string]string, error) {
	images := map[string]string{}
	for _, vm := range s.vms {
		v, err := s.d.VM(vm)
		if err != nil {
			return nil, err
		}
		if len(v.Disks) == 0 {
			return nil, fmt.Errorf("%s has no disk", vm)
		}
		images[vm] = v.Disks[0].Image
	}
	return images, nil
}

// checkRunningAt waits for every VM to be served at site and compares what
// is served with want's image, byte for byte.
func (s *soak) checkRunningAt(ctx context.Context, site string, want map[string]string) error {
	var mu sync.Mutex
	err := world.Parallel(s.vms, func(vm string) error {
		v, err := s.d.WaitVM(ctx, vm, "running at "+site, 2*time.Minute, func(v projections.VMView) bool {
			return v.ActiveSite == site && len(v.Disks) > 0 && v.Disks[0].NBDURL != ""
		}, nil)
		if err != nil {
			return err
		}
		if err := s.d.CheckServedEquals(v, want[vm]); err != nil {
			return err
		}
		mu.Lock()
		s.stat.Verified++
		mu.Unlock()
		return nil
	})
	return err
}

func (s *soak) waitProtected(ctx context.Context, site string) error {
	return world.Parallel(s.vms, func(vm string) error {
		_, err := s.d.WaitVM(ctx, vm, "protected from "+site, 3*time.Minute, protectedAt(site), nil)
		return err
	})
}

// soakWait bounds each plan operation: a job that hangs fails the soak
// instead of stalling it.
const soakWait = 3 * time.Minute

// plan runs a plan operation on the soak's plan and waits for its job.
func (s *soak) plan(verb string) (string, error) {
	return s.d.CLI("plan", verb, "soak", "--wait", "--wait-timeout", soakWait.String())
}

// diagnose prints each VM's state, health and last error: what an
// operator looks at first after a failure.
func (s *soak) diagnose() {
	fmt.Fprintln(s.out, "\nVMs at the failure:")
	for _, vm := range s.vms {
		v, err := s.d.VM(vm)
		if err != nil {
			fmt.Fprintf(s.out, "  %s: %v\n", vm, err)
			continue
		}
		last := ""
		if v.LastError != nil {
			last = fmt.Sprintf("; last error on %s: %s: %s", v.LastError.Host, v.LastError.Code, v.LastError.Message)
		}
		fmt.Fprintf(s.out, "  %s: %s at %s (epoch %d, %s → %s), health %s%s\n", vm, v.ProtectionState, v.ActiveSite,
			v.Epoch, v.SourceHost, v.RecoveryHost, v.Health, last)
	}
}
