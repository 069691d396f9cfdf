package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/siterecovery/siterecovery/test/soak"
)

// soakConfig is the configuration of `siterecovery soak`.
type soakConfig struct {
	soak.Config
	LogLevel string
}

func parseSoak(args []string, stderr io.Writer) (soakConfig, error) {
	c := soakConfig{Config: soak.Config{Seed: uint64(time.Now().UnixNano())}}
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

// runSoakCmd is `siterecovery soak` (package test/soak): exit 0 when every
// verification passed, 1 on the first that did not (or any failure), 2 on
// bad usage.
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
	cfg.Logger, cfg.CLI = logger, runOperator
	if err := soak.Run(ctx, cfg.Config, stdout); err != nil {
		return 1
	}
	return 0
}
