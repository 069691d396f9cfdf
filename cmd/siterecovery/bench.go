package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/siterecovery/siterecovery/test/bench"
)

// benchConfig is the configuration of `siterecovery bench`.
type benchConfig struct {
	bench.Config
	LogLevel string
}

func parseBench(args []string, stderr io.Writer) (benchConfig, error) {
	var c benchConfig
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&c.JSON, "json", false, "print one JSON object per figure instead of a table")
	fs.BoolVar(&c.Quick, "quick", false, "smaller sizes: the whole run takes a minute or two")
	fs.BoolVar(&c.Smoke, "smoke", false, "tiny sizes, for tests: checks that every benchmark runs, the figures mean little")
	fs.StringVar(&c.Only, "only", "", "run only these benchmarks (comma-separated: "+bench.Names()+")")
	fs.StringVar(&c.Markdown, "markdown", "", "also rewrite the generated section of this markdown file with the figures")
	fs.StringVar(&c.CPUProf, "cpuprofile", "", "write a CPU profile of the run (agents and control plane included) to this file")
	fs.StringVar(&c.Data, "data", "", "directory for the images and stores (default: a new temporary directory, removed at the end)")
	fs.StringVar(&c.LogLevel, "log-level", "error", "log level of the components")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("bench takes no arguments, got %q", fs.Args())
	}
	return c, c.Validate()
}

// runBench runs the end-to-end benchmarks (package test/bench) and prints
// their figures.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseBench(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "siterecovery bench: %v\n", err)
		return 2
	}
	logger, err := newLogger(cfg.LogLevel, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "siterecovery bench: %v\n", err)
		return 2
	}
	cfg.Logger = logger
	if err := bench.Run(ctx, cfg.Config, stdout, stderr); err != nil {
		return 1
	}
	return 0
}
