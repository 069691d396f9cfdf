package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/siterecovery/siterecovery/test/scale"
)

// scaleConfig is the configuration of `siterecovery scale`.
type scaleConfig struct {
	scale.Config
	LogLevel string
}

func parseScale(args []string, stderr io.Writer) (scaleConfig, error) {
	c := scaleConfig{Config: scale.Defaults(), LogLevel: "error"}
	var quick bool
	fs := flag.NewFlagSet("scale", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&c.VMs, "vms", c.VMs, "protected VMs on the control plane")
	fs.IntVar(&c.Hosts, "hosts", c.Hosts, "simulated hosts (an even number: half at each site)")
	fs.IntVar(&c.Events, "events", c.Events, "events in the log rebuilt into fresh projections")
	fs.DurationVar(&c.Window, "window", c.Window, "how long the steady state is measured")
	fs.BoolVar(&quick, "quick", false, "100 VMs, 100k events, a 10 s window (sizes given explicitly still apply)")
	fs.BoolVar(&c.JSON, "json", false, "print one JSON object per figure instead of a table")
	fs.StringVar(&c.Data, "data", "", "data directory (default: a new temporary directory, removed at the end)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log level of the components")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("scale takes no arguments, got %q", fs.Args())
	}
	if quick {
		q := scale.Quick(scale.Defaults())
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["vms"] {
			c.VMs = q.VMs
		}
		if !set["events"] {
			c.Events = q.Events
		}
		if !set["window"] {
			c.Window = q.Window
		}
		c.Queries = q.Queries
	}
	return c, c.Validate()
}

// runScaleCmd is `siterecovery scale` (package test/scale).
func runScaleCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseScale(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "siterecovery scale: %v\n", err)
		return 2
	}
	progress := stderr
	if cfg.JSON {
		progress = io.Discard
	}
	if cfg.Logger, err = newLogger(cfg.LogLevel, progress); err != nil {
		fmt.Fprintf(stderr, "siterecovery scale: %v\n", err)
		return 1
	}
	res, err := scale.Run(ctx, cfg.Config, progress)
	if err != nil {
		fmt.Fprintf(stderr, "siterecovery scale: %v\n", err)
		return 1
	}
	if err := scale.Print(stdout, cfg.Config, res); err != nil {
		fmt.Fprintf(stderr, "siterecovery scale: %v\n", err)
		return 1
	}
	return 0
}
