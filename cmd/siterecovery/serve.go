package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/siterecovery/siterecovery/cmd/siterecovery/controlplane"
)

// serveConfig is the configuration of `siterecovery serve`: the control
// plane's and the level of its log.
type serveConfig struct {
	controlplane.Config
	LogLevel string
}

func parseServe(args []string, stderr io.Writer) (serveConfig, error) {
	var c serveConfig
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Data, "data", "./data", "directory of the embedded NATS store and projections.db")
	fs.StringVar(&c.NATSURL, "nats", "", "use this NATS server or cluster instead of embedding one")
	fs.StringVar(&c.Listen, "listen", "127.0.0.1:4222", "address of the embedded NATS server")
	fs.StringVar(&c.HTTP, "http", "127.0.0.1:8080", "address of the HTTP API, console and metrics (empty: off)")
	fs.DurationVar(&c.FailoverTimeout, "failover-timeout", 0, "bound of a failover from its start to the recovery host serving (0: 10m)")
	fs.IntVar(&c.Replicas, "replicas", 0, "stream replicas (0: 3 when the JetStream cluster has at least 3 servers, else 1)")
	fs.StringVar(&c.LogLevel, "log-level", "info", "trace, debug, info, warn or error")
	fs.StringVar(&c.TLSDir, "tls-dir", tlsDirFlagDefault(), "certificates of siterecovery auth init: require mTLS on NATS, HTTPS and bearer tokens on HTTP (env SR_TLS_DIR)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("serve takes no arguments, got %q", fs.Args())
	}
	if c.FailoverTimeout < 0 {
		return c, fmt.Errorf("--failover-timeout %s: must not be negative", c.FailoverTimeout)
	}
	if c.Replicas < 0 || c.Replicas > 5 {
		return c, fmt.Errorf("--replicas %d: want 0 (auto) to 5", c.Replicas)
	}
	if c.NATSURL == "" {
		if _, _, err := controlplane.SplitHostPort(c.Listen); err != nil {
			return c, fmt.Errorf("--listen: %w", err)
		}
		if c.Data == "" {
			return c, errors.New("--data must name a directory")
		}
	}
	return c, nil
}

// runServe runs the control plane until ctx ends (SIGINT, SIGTERM).
func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseServe(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stderr, "siterecovery serve: %v\n", err)
		}
		return 2
	}
	logger, err := newLogger(cfg.LogLevel, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "siterecovery serve: %v\n", err)
		return 2
	}
	cp, err := controlplane.Open(ctx, cfg.Config, logger)
	if err != nil {
		logger.Error().Err(err).Msg("control plane did not start")
		return 1
	}
	logger.Info().Str("nats", cp.URL()).Str("http", cfg.HTTP).Msg("control plane running")
	<-ctx.Done()
	logger.Info().Msg("shutting down")
	closeCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cp.Close(closeCtx); err != nil {
		logger.Error().Err(err).Msg("shutdown")
		return 1
	}
	return 0
}
