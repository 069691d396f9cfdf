package bench

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/rs/zerolog"

	"github.com/siterecovery/siterecovery/test/world"
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

func (c Config) sizes() benchSizes {
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

// benchEnv is the system the end-to-end benchmarks run on: the world of
// package world (the control plane on its embedded NATS server with
// SyncAlways, as `serve`, a client connection, and the two host agents in
// this process, each with its own connection, event log and data
// directory).
type benchEnv struct {
	*world.World
	cfg    Config
	sizes  benchSizes
	dir    string
	remove bool
	logger zerolog.Logger
}

func openBenchEnv(ctx context.Context, cfg Config, logger zerolog.Logger) (e *benchEnv, err error) {
	e = &benchEnv{cfg: cfg, sizes: cfg.sizes(), dir: cfg.Data, logger: logger}
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
	e.World, err = world.Open(ctx, world.Config{Dir: e.dir, ControlPlaneDir: filepath.Join(e.dir, "cp"), HostsDir: e.dir,
		ClientName: "siterecovery-bench", Logger: logger, Agent: world.AgentOptions{HeartbeatEvery: time.Second}})
	if err != nil {
		return e, err
	}
	if err := e.Build(ctx, e.fabric()); err != nil {
		return e, err
	}
	for _, h := range []string{benchSource, benchRecovery} {
		if err := e.StartAgent(ctx, h); err != nil {
			return e, err
		}
	}
	return e, nil
}

// fabric is the benchmarks' fabric: random data does not compress, so
// compression is off, as an operator would set it for such disks.
func (e *benchEnv) fabric() world.Fabric {
	return world.Fabric{Source: benchSource, Recovery: benchRecovery, Policy: map[string]any{"name": "pbench",
		"copy_frequency": e.sizes.copyFrequency.String(), "retention": "1h", "compression": false}}
}

// Close stops the agents, then the control plane, and removes a temporary
// directory.
func (e *benchEnv) Close(ctx context.Context) error {
	var errs []error
	if e.World != nil {
		errs = append(errs, e.World.Close(ctx))
		e.World = nil
	}
	if e.remove {
		errs = append(errs, os.RemoveAll(e.dir))
		e.remove = false
	}
	return errors.Join(errs...)
}

// createVM creates a VM with one disk on the source host.
func (e *benchEnv) createVM(ctx context.Context, name string, size int64) error {
	return e.CreateVM(ctx, name, benchSource, benchDisk, size)
}

func (e *benchEnv) sourceImage(vm string) string { return e.SourceImage(benchSource, vm, benchDisk) }

func (e *benchEnv) replicaImage(vm string) string {
	return e.ReplicaImage(benchRecovery, vm, benchDisk)
}

// dialDisk connects an NBD client to the VM's disk on the source host,
// waiting for the agent to serve it.
func (e *benchEnv) dialDisk(ctx context.Context, vm string) (*benchNBD, error) {
	c, err := e.DialDisk(ctx, benchSource, vm, benchDisk)
	if err != nil {
		return nil, err
	}
	return &benchNBD{c}, nil
}

// scratch is a new directory for a benchmark's baseline files.
func (e *benchEnv) scratch(name string) (string, error) {
	dir := filepath.Join(e.dir, "scratch", name)
	return dir, os.MkdirAll(dir, 0o750)
}
