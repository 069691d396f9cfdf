package hostsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/agentproto"
	"github.com/siterecovery/siterecovery/hostsync/disk"
	"github.com/siterecovery/siterecovery/hostsync/nbd"
)

// AgentConfig configures an Agent.
type AgentConfig struct {
	// Host is this host's name, as registered (required).
	Host string
	// DataDir holds the VMs' disk images (vms/<vm>/<disk>.img and their
	// .hrl change logs), the replicas (replicas/<vm>/) and the NBD socket
	// (nbd.sock) (required).
	DataDir string
	// Transport is the agent's messaging with the control plane and the
	// other agents (required; natsbus makes it on a NATS connection, which
	// stays the caller's).
	Transport Transport
	// Log is the event log the agent follows (required).
	Log events.Log
	// Logger receives the agent's messages.
	Logger zerolog.Logger

	// HeartbeatEvery is the heartbeat period (default 5s).
	HeartbeatEvery time.Duration
	// ResendAfter is how long a shipped cycle may stay unapplied before it
	// is sent again (default 30s, at least twice the copy frequency).
	ResendAfter time.Duration
	// IRChunk is the size of one initial replication cycle (default 8 MiB).
	IRChunk int64
	// PeerWaitWarnAfter is how long a resync may wait for its peer (the
	// recovery host's agent down, or not holding the replica yet) before
	// the wait is logged as a warning; until then it is logged once, at
	// info (default 1 min).
	PeerWaitWarnAfter time.Duration
	// DiskBootID overrides the boot id of the change logs (tests).
	DiskBootID string
	// ReplicaHook is passed to the replicas (tests inject crashes with it).
	ReplicaHook func(vm, stage string) error
	// ReportHook, when set, runs before each report to the control plane
	// is sent, with its verb (tests delay a report by blocking in it); an
	// error drops the report as if no control plane had answered.
	ReportHook func(ctx context.Context, verb string) error
	// VMStartCommand and VMStopCommand, when set, run (/bin/sh -c) when the
	// agent starts or stops serving a VM, with SR_VM, SR_NBD_URLS (space
	// separated) and SR_NETWORKS (comma separated) in the environment, so
	// a hypervisor can start or stop the VM (failover*.go).
	VMStartCommand string
	VMStopCommand  string
}

// Transport is what the agent needs of its messaging, one interface per
// use, each declared where it is used. natsbus.New(nc).Transport() makes
// one on a NATS connection; every part is required.
type Transport struct {
	// ControlPlane takes the agent's reports (agent_report.go).
	ControlPlane ControlPlane
	// Peers carries the cycle acks, leaves and verify requests (peers.go).
	Peers Peers
	// Deltas manages the delta streams and the VMs' consumers (streams.go).
	Deltas DeltaStreams
	// Batches publishes the batches into the delta streams (streams.go).
	Batches BatchPublisher
}

// missing names the first part of t that is not set ("" when none).
func (t Transport) missing() string {
	switch {
	case t.ControlPlane == nil:
		return "control plane"
	case t.Peers == nil:
		return "peers"
	case t.Deltas == nil:
		return "delta streams"
	case t.Batches == nil:
		return "batch publisher"
	}
	return ""
}

func (c *AgentConfig) check() error {
	switch {
	case events.ValidateToken("host", c.Host) != nil:
		return fmt.Errorf("%w: host %q is not a name", ErrAgentConfig, c.Host)
	case c.DataDir == "":
		return fmt.Errorf("%w: no data directory", ErrAgentConfig)
	case c.Transport.missing() != "":
		return fmt.Errorf("%w: no %s in the transport", ErrAgentConfig, c.Transport.missing())
	case c.Log == nil:
		return fmt.Errorf("%w: no event log", ErrAgentConfig)
	}
	if c.HeartbeatEvery <= 0 {
		c.HeartbeatEvery = 5 * time.Second
	}
	if c.ResendAfter <= 0 {
		c.ResendAfter = 30 * time.Second
	}
	if c.IRChunk <= 0 {
		c.IRChunk = 8 << 20
	}
	if c.PeerWaitWarnAfter <= 0 {
		c.PeerWaitWarnAfter = time.Minute
	}
	return nil
}

// Agent is the host agent: it follows the event log, serves the disks of
// the VMs active on its host over NBD, replicates the VMs it is the source
// of, applies the cycles of the VMs it is the recovery host of, and reports
// to the control plane. New, Open, Close.
type Agent struct {
	cfg    AgentConfig
	logger zerolog.Logger
	tr     Transport
	nbd    *nbd.Server
	rep    reporter

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	ackSub Subscription

	mu      sync.Mutex
	vms     map[string]*vmCtl
	budgets map[string]*byteBudget // delta stream → bytes in flight
	// receiving counts the VMs applying batches (receiver.go: pullShare).
	receiving atomic.Int32

	closeOnce sync.Once
	closeErr  error
}

// NewAgent checks cfg and sets its defaults; Open starts the agent.
func NewAgent(cfg AgentConfig) (*Agent, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	logger := cfg.Logger.With().Str("component", "agent").Str("host", cfg.Host).Logger()
	return &Agent{
		cfg: cfg, logger: logger, tr: cfg.Transport, nbd: nbd.NewServer(logger),
		rep: reporter{cp: cfg.Transport.ControlPlane, host: cfg.Host, hook: cfg.ReportHook}, vms: map[string]*vmCtl{}, budgets: map[string]*byteBudget{},
	}, nil
}

// SocketPath is the Unix socket the agent serves its NBD exports on.
func (a *Agent) SocketPath() string { return filepath.Join(a.cfg.DataDir, "nbd.sock") }

// ExportName is the NBD export name of a VM's disk.
func ExportName(vm, disk string) string { return vm + "." + disk }

// Open creates the data directory, listens on the NBD socket, and starts
// following the log, heartbeating and receiving cycle acknowledgements.
func (a *Agent) Open(ctx context.Context) error {
	for _, dir := range []string{a.cfg.DataDir, a.vmsDir(), a.replicasDir()} {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return fmt.Errorf("agent data dir: %w", err)
		}
	}
	if err := a.nbd.ListenUnix(a.SocketPath()); err != nil {
		return err
	}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	sub, err := a.tr.Peers.Subscribe(agentproto.AckSubject(a.cfg.Host, "*"), a.onAck)
	if err != nil {
		a.cancel()
		return errors.Join(fmt.Errorf("subscribe to cycle acks: %w", err), a.nbd.Close())
	}
	a.ackSub = sub
	a.wg.Add(2)
	go a.follow()
	go a.heartbeat()
	a.logger.Info().Str("data", a.cfg.DataDir).Str("nbd", a.SocketPath()).Msg("agent started")
	return nil
}

// Close stops every VM's work, the NBD server and the goroutines, closes
// the disks and replicas, and returns the first error. Safe twice.
func (a *Agent) Close(ctx context.Context) error {
	a.closeOnce.Do(func() {
		if a.cancel == nil {
			return
		}
		a.cancel()
		var errs []error
		if a.ackSub != nil {
			errs = append(errs, a.ackSub.Unsubscribe())
		}
		a.wg.Wait()
		errs = append(errs, a.nbd.Close())
		a.mu.Lock()
		ctls := slices.Collect(maps.Values(a.vms))
		a.mu.Unlock()
		for _, c := range ctls {
			errs = append(errs, c.close())
		}
		a.closeErr = errors.Join(errs...)
	})
	return a.closeErr
}

func (a *Agent) vmsDir() string              { return filepath.Join(a.cfg.DataDir, "vms") }
func (a *Agent) replicasDir() string         { return filepath.Join(a.cfg.DataDir, "replicas") }
func (a *Agent) vmDir(vm string) string      { return filepath.Join(a.vmsDir(), vm) }
func (a *Agent) replicaDir(vm string) string { return filepath.Join(a.replicasDir(), vm) }

// follow folds the VM aggregates from the start of the log and hands every
// changed VM that concerns this host to its controller. The agent keeps no
// checkpoint: folding the log is quick, and acting on the folded state
// (not on single events) makes a restart pick up where it stopped. While
// it catches up with the log as it was when the agent started, nothing is
// handed over: a controller must never act on a VM's past (serve a disk
// where the VM was active before a failover, report an error against a
// state long gone), only on its present.
func (a *Agent) follow() {
	defer a.wg.Done()
	r := &logReader{a: a, folded: map[string]*vmFold{}, dirty: map[string]bool{}, next: 1, dispatch: a.dispatch}
	for a.ctx.Err() == nil {
		if r.live == 0 {
			last, err := a.cfg.Log.LastSeq(a.ctx)
			if err != nil {
				a.logger.Warn().Err(err).Msg("read the event log's last sequence")
				a.pause(time.Second)
				continue
			}
			r.live = last + 1
		}
		cur, err := a.cfg.Log.Follow(a.ctx, r.next)
		if err != nil {
			a.logger.Warn().Err(err).Msg("follow the event log")
			a.pause(time.Second)
			continue
		}
		r.read(cur)
		cur.Close()
	}
}

// logReader is follow's state: the folded VMs, the next sequence to read,
// and live, the sequence from which the VMs are handed over as they change
// (before it, the changed VMs wait in dirty).
type logReader struct {
	a        *Agent
	folded   map[string]*vmFold
	dirty    map[string]bool
	next     uint64
	live     uint64
	dispatch func(*vmFold)
}

// vmFold is a VM's folded state and the log sequence of its last enable.
type vmFold struct {
	vm        events.VM
	enableSeq uint64
}

func (r *logReader) read(cur events.Cursor) {
	a := r.a
	for {
		if r.next >= r.live && len(r.dirty) > 0 {
			for id := range r.dirty {
				r.dispatch(r.folded[id])
			}
			clear(r.dirty)
		}
		recs, err := cur.Next(a.ctx, 512)
		if err != nil {
			if a.ctx.Err() == nil {
				a.logger.Warn().Err(err).Uint64("next", r.next).Msg("read the event log")
				a.pause(time.Second)
			}
			return
		}
		for _, rec := range recs {
			r.next = rec.Seq + 1
			if rec.Aggregate.Kind != events.KindVM {
				continue
			}
			f := r.folded[rec.Aggregate.ID]
			if f == nil {
				f = &vmFold{}
				r.folded[rec.Aggregate.ID] = f
			}
			f.vm.Apply(rec)
			if rec.Type() == events.ProtectionEnableStarted {
				f.enableSeq = rec.Seq
			}
			r.dirty[rec.Aggregate.ID] = true
		}
	}
}

// dispatch gives a copy of the VM to its controller, starting one for a VM
// that names this host.
func (a *Agent) dispatch(f *vmFold) {
	vm := cloneVM(f.vm)
	if vm.Name == "" {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	c := a.vms[vm.Name]
	if c == nil {
		h := a.cfg.Host
		if vm.SourceHost != h && vm.ActiveHost != h && vm.RecoveryHost != h {
			return
		}
		c = newVMCtl(a, vm.Name)
		a.vms[vm.Name] = c
		a.wg.Add(1)
		go c.run(a.ctx)
	}
	c.update(vm, f.enableSeq)
}

// cloneVM copies the parts of a VM that folding changes in place.
func cloneVM(vm events.VM) events.VM {
	vm.Disks = slices.Clone(vm.Disks)
	vm.RecoveryPoints = slices.Clone(vm.RecoveryPoints)
	imgs := make(map[string][]events.DiskImage, len(vm.Images))
	for k, v := range vm.Images {
		imgs[k] = slices.Clone(v)
	}
	vm.Images = imgs
	return vm
}

// budget is the in-flight byte budget of a delta stream.
func (a *Agent) budget(stream string) *byteBudget {
	a.mu.Lock()
	defer a.mu.Unlock()
	b := a.budgets[stream]
	if b == nil {
		b = newByteBudget(maxInFlight)
		a.budgets[stream] = b
	}
	return b
}

func (a *Agent) ctl(vm string) *vmCtl {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.vms[vm]
}

// onAck takes a recovery host's acknowledgement of applied cycles.
func (a *Agent) onAck(subject string, data []byte) {
	vm := subject[strings.LastIndexByte(subject, '.')+1:]
	var ack cycleAck
	if err := json.Unmarshal(data, &ack); err != nil {
		a.logger.Warn().Err(err).Str("subject", subject).Msg("cycle ack does not decode")
		return
	}
	if c := a.ctl(vm); c != nil {
		c.acked(ack)
	}
}

// refusedHeartbeatEvery is the heartbeat period while the control plane
// refuses them (the host is not registered yet): once it is, the next
// heartbeat makes it reachable without waiting a whole HeartbeatEvery.
const refusedHeartbeatEvery = time.Second

func (a *Agent) heartbeat() {
	defer a.wg.Done()
	for {
		every := a.cfg.HeartbeatEvery
		err := a.rep.report(a.ctx, agentproto.VerbHeartbeat, agentproto.HeartbeatReport{Agent: "siterecovery-agent", Time: time.Now().UTC()})
		if err != nil && a.ctx.Err() == nil {
			a.logger.Debug().Err(err).Msg("heartbeat")
		}
		var re *ReportError
		if errors.As(err, &re) {
			every = min(every, refusedHeartbeatEvery)
		}
		t := time.NewTimer(every)
		select {
		case <-a.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// pause waits d or until the agent closes.
func (a *Agent) pause(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-a.ctx.Done():
	case <-t.C:
	}
}

// saveJSON writes v to path durably: temp file, fsync, rename, fsync dir.
func saveJSON(path string, v any) error {
	buf, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(buf)
	if err == nil {
		err = f.Sync()
	}
	if err = errors.Join(err, f.Close()); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return disk.SyncDir(filepath.Dir(path))
}

// loadJSON reads path into v; a missing file leaves v and returns false.
func loadJSON(path string, v any) (bool, error) {
	buf, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(buf, v); err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	return true, nil
}
