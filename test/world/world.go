package world

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/siterecovery/siterecovery/cmd/siterecovery/controlplane"
)

// Config shapes a World.
type Config struct {
	// Dir is the world's data directory.
	Dir string
	// ControlPlaneDir is the control plane's data directory (default Dir).
	ControlPlaneDir string
	// HostsDir holds each host's data directory, HostsDir/<host>
	// (default Dir/hosts).
	HostsDir string
	// HTTP is the address of the control plane's HTTP endpoint ("": none).
	HTTP string
	// ClientName names the world's own NATS connection, the one its
	// commands and queries go through (default siterecovery-world).
	ClientName string
	// Agent is how StartAgent runs the agents (its Logger aside: they log
	// to Logger; the agent names its host in every line).
	Agent AgentOptions
	// Logger is the control plane's and the agents' logger.
	Logger zerolog.Logger
}

// World is a control plane on its embedded NATS server, a client
// connection to it, and the agents started in it. One goroutine drives it
// (the agents map is not guarded).
type World struct {
	cfg    Config
	cp     *controlplane.ControlPlane
	nc     *nats.Conn
	agents map[string]*Agent
}

// Open starts the control plane (on a random loopback port) and connects
// to it; no agent runs yet.
func Open(ctx context.Context, cfg Config) (w *World, err error) {
	if cfg.ControlPlaneDir == "" {
		cfg.ControlPlaneDir = cfg.Dir
	}
	if cfg.HostsDir == "" {
		cfg.HostsDir = filepath.Join(cfg.Dir, "hosts")
	}
	if cfg.ClientName == "" {
		cfg.ClientName = "siterecovery-world"
	}
	w = &World{cfg: cfg, agents: map[string]*Agent{}}
	cpCfg := controlplane.Config{Data: cfg.ControlPlaneDir, Listen: "127.0.0.1:0", HTTP: cfg.HTTP}
	if w.cp, err = controlplane.Open(ctx, cpCfg, cfg.Logger); err != nil {
		return nil, err
	}
	if w.nc, err = controlplane.Connect(w.cp.URL(), cfg.ClientName, cfg.Logger); err != nil {
		return nil, errors.Join(err, w.Close(context.Background()))
	}
	return w, nil
}

// ControlPlane is the world's control plane.
func (w *World) ControlPlane() *controlplane.ControlPlane { return w.cp }

// URL is the NATS URL of the control plane.
func (w *World) URL() string { return w.cp.URL() }

// Conn is the world's client connection.
func (w *World) Conn() *nats.Conn { return w.nc }

// HostDir is host's data directory.
func (w *World) HostDir(host string) string { return filepath.Join(w.cfg.HostsDir, host) }

// StartAgent runs host's agent with its data in HostDir(host).
func (w *World) StartAgent(ctx context.Context, host string) error {
	if w.agents[host] != nil {
		return fmt.Errorf("agent %s: already running", host)
	}
	o := w.cfg.Agent
	o.Logger = w.cfg.Logger
	a, err := StartAgent(ctx, w.URL(), host, w.HostDir(host), o)
	if err != nil {
		return err
	}
	w.agents[host] = a
	return nil
}

// Agent is host's running agent, nil when none runs.
func (w *World) Agent(host string) *Agent { return w.agents[host] }

// StopAgent stops host's agent, if it runs: no more shipping, its files as
// they are (a host that dies leaves them so too).
func (w *World) StopAgent(host string) error {
	a, ok := w.agents[host]
	if !ok {
		return nil
	}
	delete(w.agents, host)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return a.Close(ctx)
}

// StopAgents stops every running agent.
func (w *World) StopAgents() error {
	var errs []error
	for host := range w.agents {
		errs = append(errs, w.StopAgent(host))
	}
	return errors.Join(errs...)
}

// Close stops the agents, the client connection and the control plane;
// ctx bounds the control plane's shutdown.
func (w *World) Close(ctx context.Context) error {
	errs := []error{w.StopAgents()}
	if w.nc != nil {
		w.nc.Close()
	}
	if w.cp != nil {
		errs = append(errs, w.cp.Close(ctx))
	}
	return errors.Join(errs...)
}
