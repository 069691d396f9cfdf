package world

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/siterecovery/siterecovery/cmd/siterecovery/controlplane"
	"github.com/siterecovery/siterecovery/events/jetstream"
	"github.com/siterecovery/siterecovery/hostsync"
	"github.com/siterecovery/siterecovery/hostsync/natsbus"
)

// AgentOptions are an in-process agent's settings where they differ from
// those of `siterecovery agent` (zero: the agent's default).
type AgentOptions struct {
	HeartbeatEvery time.Duration
	ResendAfter    time.Duration
	IRChunk        int64
	DiskBootID     string
	// LogReplicas is the event log's replica count (0: 1, as on one
	// server).
	LogReplicas int
	Logger      zerolog.Logger
	// ReportHook runs before each of the agent's reports (tests: delay
	// or drop one); see hostsync.AgentConfig.ReportHook.
	ReportHook func(ctx context.Context, verb string) error
	// NATSOptions are added to the agent's connection's (tests: a client
	// that reconnects to its own server only).
	NATSOptions []nats.Option
}

// Agent is a host agent running in this process on a NATS connection and
// an event log of its own.
type Agent struct {
	*hostsync.Agent
	nc  *nats.Conn
	log *jetstream.Log
	dir string
}

// StartAgent connects to the NATS server at url and runs host's agent with
// its data in dir until Close.
func StartAgent(ctx context.Context, url, host, dir string, o AgentOptions) (*Agent, error) {
	nc, err := controlplane.Connect(url, "siterecovery-agent-"+host, o.Logger, o.NATSOptions...)
	if err != nil {
		return nil, err
	}
	log, err := jetstream.Open(ctx, nc, jetstream.Config{Replicas: o.LogReplicas, Logger: o.Logger})
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("agent %s: event log: %w", host, err)
	}
	bus, err := natsbus.New(nc)
	if err != nil {
		nc.Close()
		return nil, errors.Join(fmt.Errorf("agent %s: %w", host, err), log.Close())
	}
	a, err := hostsync.NewAgent(hostsync.AgentConfig{
		Host: host, DataDir: dir, Transport: bus.Transport(), Log: log, Logger: o.Logger,
		HeartbeatEvery: o.HeartbeatEvery, ResendAfter: o.ResendAfter, IRChunk: o.IRChunk, DiskBootID: o.DiskBootID,
		ReportHook: o.ReportHook,
	})
	if err == nil {
		err = a.Open(ctx)
	}
	if err != nil {
		err = errors.Join(fmt.Errorf("agent %s: %w", host, err), log.Close())
		nc.Close()
		return nil, err
	}
	return &Agent{Agent: a, nc: nc, log: log, dir: dir}, nil
}

// Dir is the agent's data directory.
func (a *Agent) Dir() string { return a.dir }

// Close stops the agent, closes its log and its connection.
func (a *Agent) Close(ctx context.Context) error {
	err := errors.Join(a.Agent.Close(ctx), a.log.Close())
	a.nc.Close()
	return err
}

// Conn is the agent's NATS connection.
func (a *Agent) Conn() *nats.Conn { return a.nc }
