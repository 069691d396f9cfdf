package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/siterecovery/siterecovery/cmd/siterecovery/controlplane"
	"github.com/siterecovery/siterecovery/cmd/siterecovery/pki"
	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/jetstream"
	"github.com/siterecovery/siterecovery/hostsync"
	"github.com/siterecovery/siterecovery/hostsync/natsbus"
)

// agentConfig is the configuration of `siterecovery agent`.
type agentConfig struct {
	Host     string
	NATSURL  string
	Data     string
	LogLevel string
	// TLSDir: connect with mTLS as <host>.pem (docs/security.md).
	TLSDir string
	// VMStartCommand and VMStopCommand start and stop the hypervisor's VM
	// when this host starts or stops serving it (sh -c, with SR_VM,
	// SR_NBD_URLS and SR_NETWORKS in the environment).
	VMStartCommand string
	VMStopCommand  string
}

func parseAgent(args []string, stderr io.Writer) (agentConfig, error) {
	var c agentConfig
	url := os.Getenv("SR_NATS_URL")
	if url == "" {
		url = defaultNATSURL
	}
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Host, "host", "", "this host's name, as registered (required)")
	fs.StringVar(&c.NATSURL, "nats", url, "NATS URL of the control plane (env SR_NATS_URL)")
	fs.StringVar(&c.Data, "data", "./agent-data", "directory of the disk images, change logs and replicas")
	fs.StringVar(&c.LogLevel, "log-level", "info", "trace, debug, info, warn or error")
	fs.StringVar(&c.VMStartCommand, "vm-start-cmd", "", "shell command that starts a VM when this host starts serving it (env SR_VM, SR_NBD_URLS, SR_NETWORKS)")
	fs.StringVar(&c.VMStopCommand, "vm-stop-cmd", "", "shell command that stops a VM before this host stops serving it")
	fs.StringVar(&c.TLSDir, "tls-dir", tlsDirFlagDefault(), "directory with ca.pem and <host>.pem, <host>-key.pem: connect with mTLS (env SR_TLS_DIR)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("agent takes no arguments, got %q", fs.Args())
	}
	if err := events.ValidateToken("--host", c.Host); err != nil {
		return c, err
	}
	if c.Data == "" {
		return c, errors.New("--data must name a directory")
	}
	return c, nil
}

// runAgent runs the host agent until ctx ends (SIGINT, SIGTERM).
func runAgent(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseAgent(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stderr, "siterecovery agent: %v\n", err)
			return 2
		}
		return 0
	}
	logger, err := newLogger(cfg.LogLevel, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "siterecovery agent: %v\n", err)
		return 2
	}
	if err := agentMain(ctx, cfg, logger); err != nil {
		logger.Error().Err(err).Msg("agent stopped")
		fmt.Fprintf(stderr, "siterecovery agent: %v\n", err)
		return 1
	}
	return 0
}

// agentMain connects, opens the log and runs the agent until ctx ends.
func agentMain(ctx context.Context, cfg agentConfig, logger zerolog.Logger) error {
	tlsOpts, err := pki.NATSOptions(cfg.TLSDir, cfg.Host)
	if err != nil {
		return err
	}
	nc, err := controlplane.Connect(cfg.NATSURL, "siterecovery-agent-"+cfg.Host, logger, tlsOpts...)
	if err != nil {
		return err
	}
	defer nc.Close()
	log, err := jetstream.Open(ctx, nc, jetstream.Config{Logger: logger.With().Str("component", "log").Logger()})
	if err != nil {
		return fmt.Errorf("event log: %w", err)
	}
	defer log.Close()
	bus, err := natsbus.New(nc)
	if err != nil {
		return err
	}
	agent, err := hostsync.NewAgent(hostsync.AgentConfig{
		Host: cfg.Host, DataDir: cfg.Data, Transport: bus.Transport(), Log: log, Logger: logger,
		VMStartCommand: cfg.VMStartCommand, VMStopCommand: cfg.VMStopCommand,
	})
	if err != nil {
		return err
	}
	if err := agent.Open(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	closeCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return agent.Close(closeCtx)
}
