package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/rs/zerolog"

	"github.com/siterecovery/siterecovery/test/demo"
)

// demoConfig is the configuration of `siterecovery demo`.
type demoConfig struct {
	Keep     bool
	Data     string
	HTTP     string
	LogLevel string
}

func parseDemo(args []string, stderr io.Writer) (demoConfig, error) {
	var c demoConfig
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&c.Keep, "keep", false, "leave the control plane running at the end, until interrupted")
	fs.StringVar(&c.Data, "data", "", "data directory (default: a new temporary directory, removed at the end)")
	fs.StringVar(&c.HTTP, "http", "127.0.0.1:0", "address of the HTTP endpoint")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level of the components, which log to demo.log in the data directory")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("demo takes no arguments, got %q", fs.Args())
	}
	return c, nil
}

// runDemo is `siterecovery demo` (package test/demo), driving the
// operator commands of this binary.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseDemo(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "siterecovery demo: %v\n", err)
		return 2
	}
	if _, err := newLogger(cfg.LogLevel, io.Discard); err != nil {
		fmt.Fprintf(stderr, "siterecovery demo: %v\n", err)
		return 2
	}
	// The components log to the demo's log file, stdout is the narrative.
	logTo := func(w io.Writer) zerolog.Logger {
		logger, _ := newLogger(cfg.LogLevel, w) // the level was checked above
		return logger
	}
	err = demo.Run(ctx, demo.Config{Keep: cfg.Keep, Data: cfg.Data, HTTP: cfg.HTTP, LogTo: logTo,
		CLI: runOperator, TTY: isTerminal(stdout)}, stdout)
	if err != nil {
		return 1
	}
	return 0
}
