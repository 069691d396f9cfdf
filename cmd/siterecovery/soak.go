package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/siterecovery/siterecovery/cmd/siterecovery/controlplane"
	"github.com/siterecovery/siterecovery/projections"
)

// soakConfig is the configuration of `siterecovery soak`.
type soakConfig struct {
	Duration time.Duration
	VMs      int
	DiskMiB  int
	// UnplannedEvery: every Nth cycle's failover is unplanned (0: never).
	UnplannedEvery int
	Seed           uint64
	Data           string
	Verbose        bool
	LogLevel       string
}

// soak runs the demo's world (embedded NATS, control plane, agents hv01 at
// primary and hv02 at secondary) with cfg.VMs VMs for a set time: cycles of
// random workloads, each followed by a planned failover and failback of a
// recovery plan of every VM (every --unplanned-every cycle an unplanned
// failover after hv01 dies, its restart, then the failback), checking the bytes at every
// step.
type soak struct {
	cfg  soakConfig
	d    *demo
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

func parseSoak(args []string, stderr io.Writer) (soakConfig, error) {
	c := soakConfig{Seed: uint64(time.Now().UnixNano())}
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&c.Duration, "duration", 10*time.Minute, "how long to run, setup included (at least one cycle; the cycle running at the end finishes)")
	fs.IntVar(&c.UnplannedEvery, "unplanned-every", 3, "every Nth cycle fails over unplanned, after hv01 dies (0: never)")
	fs.IntVar(&c.VMs, "vms", 10, "VMs replicated from hv01 to hv02")
	fs.IntVar(&c.DiskMiB, "disk-mib", 32, "size of each VM's disk in MiB")
	fs.Uint64Var(&c.Seed, "seed", c.Seed, "seed of the random workloads and choices")
	fs.StringVar(&c.Data, "data", "", "data directory (default: a new temporary directory, removed at the end)")
	fs.BoolVar(&c.Verbose, "v", false, "print every operator command and verification")
	fs.StringVar(&c.LogLevel, "log-level", "error", "log level of the components")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	switch {
	case fs.NArg() > 0:
		return c, fmt.Errorf("soak takes no arguments, got %q", fs.Args())
	case c.Duration <= 0:
		return c, fmt.Errorf("--duration %s: must be positive", c.Duration)
	case c.VMs < 1 || c.VMs > 100:
		return c, fmt.Errorf("--vms %d: want 1 to 100", c.VMs)
	case c.UnplannedEvery < 0:
		return c, fmt.Errorf("--unplanned-every %d: must not be negative", c.UnplannedEvery)
	case c.DiskMiB < 4 || c.DiskMiB > 4096:
		return c, fmt.Errorf("--disk-mib %d: want 4 to 4096", c.DiskMiB)
	}
	return c, nil
}

// runSoakCmd is `siterecovery soak`: exit 0 when every verification
// passed, 1 on the first that did not (or any failure), 2 on bad usage.
func runSoakCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseSoak(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "siterecovery soak: %v\n", err)
		return 2
	}
	logger, err := newLogger(cfg.LogLevel, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "siterecovery soak: %v\n", err)
		return 2
	}
	demoOut := io.Discard
	if cfg.Verbose {
		demoOut = stdout
	}
	s := &soak{cfg: cfg, out: stdout, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x5eed)),
		d: &demo{out: demoOut, start: time.Now(), logger: logger, agents: map[string]*demoAgent{}}}
	for i := range cfg.VMs {
		s.vms = append(s.vms, fmt.Sprintf("soak%02d", i))
	}
	s.stat.Failure = s.run(ctx)
	s.summary()
	if s.stat.Failure != nil {
		return 1
	}
	return 0
}

func (s *soak) run(ctx context.Context) (err error) {
	d := s.d
	if s.cfg.Data == "" {
		dir, err := os.MkdirTemp("", "siterecovery-soak-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		s.cfg.Data = dir
	}
	d.cfg = demoConfig{Data: s.cfg.Data}
	if d.cp, err = controlplane.Open(ctx, controlplane.Config{Data: s.cfg.Data, Listen: "127.0.0.1:0"}, d.logger); err != nil {
		return err
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err = errors.Join(err, d.cp.Close(closeCtx))
	}()
	d.url = d.cp.URL()
	for _, h := range []string{"hv01", "hv02"} {
		if err := d.startAgent(ctx, h); err != nil {
			return err
		}
	}
	defer func() { err = errors.Join(err, d.stopAgents()) }()
	fmt.Fprintf(s.out, "soak: %d VMs of %d MiB, %s, seed %d, NATS %s, data %s\n", s.cfg.VMs, s.cfg.DiskMiB, s.cfg.Duration, s.cfg.Seed, d.url, s.cfg.Data)
	if err := s.setup(ctx); err != nil {
		return err
	}
	deadline := s.d.start.Add(s.cfg.Duration)
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
	if err := d.fabric(ctx); err != nil {
		return err
	}
	for _, vm := range s.vms {
		if _, err := d.cli("vm", "create", vm, "--host", "hv01", "--disk", fmt.Sprintf("%dMiB", s.cfg.DiskMiB), "--network", "lan-primary"); err != nil {
			return err
		}
	}
	if err := parallel(s.vms, func(vm string) error {
		_, err := d.waitVM(ctx, vm, "disk served over NBD", 60*time.Second, func(v projections.VMView) bool {
			return len(v.Disks) > 0 && v.Disks[0].NBDURL != ""
		}, nil)
		return err
	}); err != nil {
		return err
	}
	for _, vm := range s.vms {
		if _, err := d.cli("vm", "enable", vm); err != nil {
			return err
		}
	}
	if err := parallel(s.vms, func(vm string) error {
		_, err := d.waitVM(ctx, vm, "Protected", 3*time.Minute, protectedAt("primary"), nil)
		return err
	}); err != nil {
		return err
	}
	_, err := d.cli("plan", "create", "soak", "--group", strings.Join(s.vms, ","))
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
	fmt.Fprintf(s.out, "[%7.1fs] %s\n", time.Since(s.d.start).Seconds(), fmt.Sprintf(format, args...))
}

func (s *soak) summary() {
	st := s.stat
	result := "PASSED"
	if st.Failure != nil {
		result = "FAILED: " + st.Failure.Error()
	}
	fmt.Fprintf(s.out, "\nsoak summary: %s\n", result)
	fmt.Fprintf(s.out, "  duration          %s\n", time.Since(s.d.start).Round(time.Second))
	fmt.Fprintf(s.out, "  VMs               %d\n", s.cfg.VMs)
	fmt.Fprintf(s.out, "  cycles            %d\n", st.Cycles)
	fmt.Fprintf(s.out, "  bytes written     %s\n", inMiB(st.Written))
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
