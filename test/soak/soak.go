package soak

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/siterecovery/siterecovery/projections"
	"github.com/siterecovery/siterecovery/test/demo"
	"github.com/siterecovery/siterecovery/test/world"
)

// Config is the configuration of the soak.
type Config struct {
	Duration time.Duration
	VMs      int
	DiskMiB  int
	// UnplannedEvery: every Nth cycle's failover is unplanned (0: never).
	UnplannedEvery int
	Seed           uint64
	// Data is the data directory ("": a new temporary directory, removed
	// at the end).
	Data string
	// Verbose prints every operator command and verification.
	Verbose bool
	Logger  zerolog.Logger
	// CLI runs the operator commands (package main's).
	CLI demo.CLI
}

// soak runs the demo's world (embedded NATS, control plane, agents hv01 at
// primary and hv02 at secondary) with cfg.VMs VMs for a set time: cycles of
// random workloads, each followed by a planned failover and failback of a
// recovery plan of every VM (every --unplanned-every cycle an unplanned
// failover after hv01 dies, its restart, then the failback), checking the bytes at every
// step.
type soak struct {
	cfg  Config
	d    *demo.Demo
	rng  *rand.Rand
	vms  []string
	out  io.Writer // the summary and one line per step
	stat soakStats
}

// soakStats is the soak's summary.
type soakStats struct {
	Cycles, Planned, Unplanned, Failbacks, Verified int
	Written                                         int64
	MaxRPO                                          int64
	Failure                                         error
}

// Run runs the soak and prints its summary; the error is the first
// verification that did not pass, or any failure.
func Run(ctx context.Context, cfg Config, out io.Writer) error {
	demoOut := io.Discard
	if cfg.Verbose {
		demoOut = out
	}
	s := &soak{cfg: cfg, out: out, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x5eed))}
	for i := range cfg.VMs {
		s.vms = append(s.vms, fmt.Sprintf("soak%02d", i))
	}
	s.stat.Failure = s.run(ctx, demoOut)
	s.summary()
	return s.stat.Failure
}

func (s *soak) run(ctx context.Context, demoOut io.Writer) (err error) {
	if s.cfg.Data == "" {
		dir, err := os.MkdirTemp("", "siterecovery-soak-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		s.cfg.Data = dir
	}
	d := demo.New(demo.Config{Data: s.cfg.Data, Logger: s.cfg.Logger, CLI: s.cfg.CLI}, demoOut)
	s.d = d
	if err := d.Open(ctx); err != nil {
		return err
	}
	defer func() { err = errors.Join(err, d.Close()) }()
	for _, h := range []string{"hv01", "hv02"} {
		if err := d.StartAgent(ctx, h); err != nil {
			return err
		}
	}
	fmt.Fprintf(s.out, "soak: %d VMs of %d MiB, %s, seed %d, NATS %s, data %s\n", s.cfg.VMs, s.cfg.DiskMiB, s.cfg.Duration, s.cfg.Seed, d.URL(), s.cfg.Data)
	if err := s.setup(ctx); err != nil {
		return err
	}
	deadline := s.d.Start().Add(s.cfg.Duration)
	for s.stat.Cycles == 0 || time.Now().Before(deadline) {
		if err := s.cycle(ctx); err != nil {
			s.diagnose()
			return fmt.Errorf("cycle %d: %w", s.stat.Cycles+1, err)
		}
		s.stat.Cycles++
	}
	return nil
}

// setup builds the demo's fabric, creates and protects the VMs and puts
// them in one recovery plan.
func (s *soak) setup(ctx context.Context) error {
	d := s.d
	if err := d.Fabric(ctx); err != nil {
		return err
	}
	for _, vm := range s.vms {
		if _, err := d.CLI("vm", "create", vm, "--host", "hv01", "--disk", fmt.Sprintf("%dMiB", s.cfg.DiskMiB), "--network", "lan-primary"); err != nil {
			return err
		}
	}
	if err := world.Parallel(s.vms, func(vm string) error {
		_, err := d.WaitVM(ctx, vm, "disk served over NBD", 60*time.Second, func(v projections.VMView) bool {
			return len(v.Disks) > 0 && v.Disks[0].NBDURL != ""
		}, nil)
		return err
	}); err != nil {
		return err
	}
	for _, vm := range s.vms {
		if _, err := d.CLI("vm", "enable", vm); err != nil {
			return err
		}
	}
	if err := world.Parallel(s.vms, func(vm string) error {
		_, err := d.WaitVM(ctx, vm, "Protected", 3*time.Minute, protectedAt("primary"), nil)
		return err
	}); err != nil {
		return err
	}
	_, err := d.CLI("plan", "create", "soak", "--group", strings.Join(s.vms, ","))
	s.step("%d VMs protected hv01 → hv02, recovery plan soak", len(s.vms))
	return err
}

// protectedAt: Protected, running at site, with a recovery point.
func protectedAt(site string) func(projections.VMView) bool {
	return func(v projections.VMView) bool {
		return v.ProtectionState == "Protected" && v.ActiveSite == site && v.SourceHost != "" && len(v.RecoveryPoints) > 0
	}
}

// step prints one line of progress.
func (s *soak) step(format string, args ...any) {
	fmt.Fprintf(s.out, "[%7.1fs] %s\n", time.Since(s.d.Start()).Seconds(), fmt.Sprintf(format, args...))
}

func (s *soak) summary() {
	st := s.stat
	result := "PASSED"
	if st.Failure != nil {
		result = "FAILED: " + st.Failure.Error()
	}
	fmt.Fprintf(s.out, "\nsoak summary: %s\n", result)
	fmt.Fprintf(s.out, "  duration          %s\n", time.Since(s.d.Start()).Round(time.Second))
	fmt.Fprintf(s.out, "  VMs               %d\n", s.cfg.VMs)
	fmt.Fprintf(s.out, "  cycles            %d\n", st.Cycles)
	fmt.Fprintf(s.out, "  bytes written     %s\n", demo.InMiB(st.Written))
	fmt.Fprintf(s.out, "  planned failovers %d\n", st.Planned)
	fmt.Fprintf(s.out, "  unplanned         %d (with a host restart)\n", st.Unplanned)
	fmt.Fprintf(s.out, "  failbacks         %d\n", st.Failbacks)
	fmt.Fprintf(s.out, "  verifications     %d passed\n", st.Verified)
	fmt.Fprintf(s.out, "  max RPO           %ds\n", st.MaxRPO)
	failures := 0
	if st.Failure != nil {
		failures = 1
	}
	fmt.Fprintf(s.out, "  failures          %d\n", failures)
}
