package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"

	"github.com/siterecovery/siterecovery/cmd/siterecovery/controlplane"
	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/jetstream"
	"github.com/siterecovery/siterecovery/hostsync"
)

// benchSizes are the sizes of one run: full (the targets of the issues are
// stated for them), --quick, or --smoke (tests).
type benchSizes struct {
	name          string
	copyFrequency time.Duration
	irDisk        int64
	deltaDisk     int64
	deltaBlock    int64
	rpoVMs        int
	rpoDisk       int64
	rpoRate       int64 // bytes/s of random writes per VM
	rpoFor        time.Duration
	cmdFor        time.Duration
	replayEvents  int
	nbdDisk       int64
	nbdSeq        int64
	nbdRand       int64
}

var (
	fullSizes = benchSizes{name: "full", copyFrequency: 5 * time.Second, irDisk: 1 << 30, deltaDisk: 2 << 30,
		deltaBlock: 64 << 10, rpoVMs: 10, rpoDisk: 1 << 30, rpoRate: 5_000_000, rpoFor: 60 * time.Second,
		cmdFor: 5 * time.Second, replayEvents: 100_000, nbdDisk: 2 << 30, nbdSeq: 128 << 20, nbdRand: 16 << 20}
	quickSizes = benchSizes{name: "quick", copyFrequency: 5 * time.Second, irDisk: 256 << 20, deltaDisk: 256 << 20,
		deltaBlock: 64 << 10, rpoVMs: 10, rpoDisk: 1 << 30, rpoRate: 5_000_000, rpoFor: 30 * time.Second,
		cmdFor: 2 * time.Second, replayEvents: 20_000, nbdDisk: 512 << 20, nbdSeq: 32 << 20, nbdRand: 4 << 20}
	smokeSizes = benchSizes{name: "smoke", copyFrequency: time.Second, irDisk: 8 << 20, deltaDisk: 16 << 20,
		deltaBlock: 64 << 10, rpoVMs: 2, rpoDisk: 8 << 20, rpoRate: 500_000, rpoFor: 3 * time.Second,
		cmdFor: 300 * time.Millisecond, replayEvents: 2000, nbdDisk: 16 << 20, nbdSeq: 4 << 20, nbdRand: 512 << 10}
)

func (c benchConfig) sizes() benchSizes {
	switch {
	case c.Smoke:
		return smokeSizes
	case c.Quick:
		return quickSizes
	}
	return fullSizes
}

// The fabric every benchmark shares: a source host in site primary, a
// recovery host in site secondary, one cloud each, one policy.
const (
	benchSource   = "hv01"
	benchRecovery = "hv11"
	benchDisk     = "d0"
)

// benchEnv is the system the end-to-end benchmarks run on: the control
// plane on its embedded NATS server (SyncAlways, as `serve`), a client
// connection, and the two host agents in this process, each with its own
// connection, event log and data directory.
type benchEnv struct {
	cfg    benchConfig
	sizes  benchSizes
	dir    string
	remove bool
	logger zerolog.Logger
	cp     *controlplane.ControlPlane
	nc     *nats.Conn
	agents map[string]*benchAgent
}

type benchAgent struct {
	agent *hostsync.Agent
	nc    *nats.Conn
	log   *jetstream.Log
	dir   string
}

func openBenchEnv(ctx context.Context, cfg benchConfig, logger zerolog.Logger) (e *benchEnv, err error) {
	e = &benchEnv{cfg: cfg, sizes: cfg.sizes(), dir: cfg.Data, logger: logger, agents: map[string]*benchAgent{}}
	if e.dir == "" {
		// a short path: the agents' NBD Unix sockets live under it
		if e.dir, err = os.MkdirTemp("", "srbench"); err != nil {
			return nil, err
		}
		e.remove = true
	}
	defer func() {
		if err != nil {
			closeCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err = errors.Join(err, e.Close(closeCtx))
		}
	}()
	e.cp, err = controlplane.Open(ctx, controlplane.Config{Data: filepath.Join(e.dir, "cp"), Listen: "127.0.0.1:0"}, logger)
	if err != nil {
		return e, err
	}
	if e.nc, err = controlplane.Connect(e.cp.URL(), "siterecovery-bench", logger); err != nil {
		return e, err
	}
	if err := e.fabric(ctx); err != nil {
		return e, err
	}
	for _, h := range []string{benchSource, benchRecovery} {
		if err := e.startAgent(ctx, h); err != nil {
			return e, err
		}
	}
	return e, nil
}

func (e *benchEnv) fabric(ctx context.Context) error {
	type m = map[string]any
	steps := []struct {
		subject string
		body    m
	}{
		{"sr.cmd.site.register", m{"name": "primary"}},
		{"sr.cmd.site.register", m{"name": "secondary"}},
		{"sr.cmd.host.register", m{"name": benchSource, "site": "primary"}},
		{"sr.cmd.host.register", m{"name": benchRecovery, "site": "secondary"}},
		{"sr.cmd.cloud.create", m{"name": "gold", "site": "primary", "hosts": []string{benchSource}}},
		{"sr.cmd.cloud.create", m{"name": "gold-dr", "site": "secondary", "hosts": []string{benchRecovery}}},
		// random data does not compress: compression off, as an operator
		// would set it for such disks
		{"sr.cmd.policy.create", m{"name": "pbench", "copy_frequency": e.sizes.copyFrequency.String(),
			"retention": "1h", "compression": false}},
		{"sr.cmd.pairing.create", m{"source": "gold", "target": "gold-dr", "policy": "pbench"}},
	}
	for _, s := range steps {
		if err := e.cmd(ctx, s.subject, s.body); err != nil {
			return err
		}
	}
	return nil
}

func (e *benchEnv) startAgent(ctx context.Context, host string) error {
	a := &benchAgent{dir: filepath.Join(e.dir, host)}
	e.agents[host] = a
	var err error
	if a.nc, err = controlplane.Connect(e.cp.URL(), "siterecovery-bench-agent-"+host, e.logger); err != nil {
		return err
	}
	logger := e.logger.With().Str("agent", host).Logger()
	if a.log, err = jetstream.Open(ctx, a.nc, jetstream.Config{Logger: logger}); err != nil {
		return fmt.Errorf("agent %s: event log: %w", host, err)
	}
	a.agent, err = hostsync.NewAgent(hostsync.AgentConfig{Host: host, DataDir: a.dir, NATS: a.nc, Log: a.log,
		Logger: logger, HeartbeatEvery: time.Second})
	if err != nil {
		return err
	}
	if err := a.agent.Open(ctx); err != nil {
		a.agent = nil
		return fmt.Errorf("agent %s: %w", host, err)
	}
	return nil
}

// Close stops the agents, then the control plane, and removes a temporary
// directory.
func (e *benchEnv) Close(ctx context.Context) error {
	var errs []error
	for _, a := range e.agents {
		if a.agent != nil {
			errs = append(errs, a.agent.Close(ctx))
		}
		if a.log != nil {
			errs = append(errs, a.log.Close())
		}
		if a.nc != nil {
			a.nc.Close()
		}
	}
	e.agents = map[string]*benchAgent{}
	if e.nc != nil {
		e.nc.Close()
		e.nc = nil
	}
	if e.cp != nil {
		errs = append(errs, e.cp.Close(ctx))
	}
	if e.remove {
		errs = append(errs, os.RemoveAll(e.dir))
		e.remove = false
	}
	return errors.Join(errs...)
}

// cmd sends a command to the control plane and returns its refusal as an
// error.
func (e *benchEnv) cmd(ctx context.Context, subject string, body any) error {
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	msg, err := e.nc.RequestWithContext(ctx, subject, data)
	for errors.Is(err, nats.ErrNoResponders) && ctx.Err() == nil {
		// the service's subscriptions may not have reached the server yet
		time.Sleep(50 * time.Millisecond)
		msg, err = e.nc.RequestWithContext(ctx, subject, data)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", subject, err)
	}
	if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
		return fmt.Errorf("%s refused: %s: %s", subject, code, msg.Data)
	}
	return nil
}

// createVM creates a VM with one disk on the source host.
func (e *benchEnv) createVM(ctx context.Context, name string, size int64) error {
	return e.cmd(ctx, "sr.cmd.vm.create", map[string]any{"name": name, "host": benchSource,
		"disks": []events.DiskSpec{{Name: benchDisk, Size: size}}})
}

func (e *benchEnv) enable(ctx context.Context, name string) error {
	return e.cmd(ctx, "sr.cmd.vm.enable", map[string]any{"vm": name})
}

// vm folds a VM from the event log.
func (e *benchEnv) vm(ctx context.Context, name string) (events.VM, error) {
	recs, err := e.cp.Log().Load(ctx, events.VMAgg(name))
	if err != nil {
		return events.VM{}, err
	}
	return events.FoldVM(recs), nil
}

// waitVM polls the VM until cond holds, for at most d.
func (e *benchEnv) waitVM(ctx context.Context, name string, d time.Duration, what string, cond func(events.VM) bool) (events.VM, error) {
	deadline := time.Now().Add(d)
	for {
		vm, err := e.vm(ctx, name)
		if err != nil {
			return vm, err
		}
		if cond(vm) {
			return vm, nil
		}
		if time.Now().After(deadline) {
			return vm, fmt.Errorf("vm %s: %s: not within %s (state %s, %d points)", name, what, d, vm.State, len(vm.RecoveryPoints))
		}
		select {
		case <-ctx.Done():
			return vm, ctx.Err()
		case <-time.After(20 * time.Millisecond): // polling the log, bounded by the deadline
		}
	}
}

// waitProtected waits until the VM is Protected with a recovery point.
func (e *benchEnv) waitProtected(ctx context.Context, name string, d time.Duration) (events.VM, error) {
	return e.waitVM(ctx, name, d, "protected with a recovery point", func(vm events.VM) bool {
		_, ok := vm.RecoveryPoint("latest")
		return vm.State == events.Protected && ok
	})
}

func (e *benchEnv) sourceImage(vm string) string {
	return filepath.Join(e.agents[benchSource].dir, "vms", vm, benchDisk+".img")
}

func (e *benchEnv) replicaImage(vm string) string {
	return filepath.Join(e.agents[benchRecovery].dir, "replicas", vm, benchDisk+".img")
}

// dialDisk connects an NBD client to the VM's disk on the source host,
// waiting for the agent to serve it.
func (e *benchEnv) dialDisk(ctx context.Context, vm string) (*benchNBD, error) {
	sock := e.agents[benchSource].agent.SocketPath()
	return dialBenchNBDWait(ctx, sock, hostsync.ExportName(vm, benchDisk), 30*time.Second)
}

// scratch is a new directory for a benchmark's baseline files.
func (e *benchEnv) scratch(name string) (string, error) {
	dir := filepath.Join(e.dir, "scratch", name)
	return dir, os.MkdirAll(dir, 0o750)
}
