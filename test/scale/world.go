package scale

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/siterecovery/siterecovery/cmd/siterecovery/controlplane"
	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/agentproto"
	"github.com/siterecovery/siterecovery/handlers"
	"github.com/siterecovery/siterecovery/test/world"
)

// scaleWorld is one control plane (embedded NATS with SyncAlways) and
// simulated hosts: goroutines that send what real agents report (heartbeats,
// disk_provisioned, ir_progress, ir_completed, recovery points every
// PointEvery) with no disks behind them.
type scaleWorld struct {
	cfg   Config
	out   io.Writer
	w     *world.World // the control plane; its client is the operator's connection: setup and queries
	hosts map[string]*simHost
	vms   []scaleVM

	stop      context.CancelFunc
	wg        sync.WaitGroup
	reports   atomic.Int64 // agent reports accepted since the start of the loops
	refused   atomic.Int64
	skipped   atomic.Int64 // points not sent: 64 of the host's reports were still waiting
	firstErr  atomic.Pointer[error]
	latMu     sync.Mutex
	pointLat  []time.Duration // recovery point reports' round trips
	closeOnce sync.Once
	closeErr  error
}

// scaleVM is one VM: where it runs and which host holds its replica.
type scaleVM struct {
	name, source, recovery string
}

// simHost is a simulated host: its own NATS connection, as an agent has.
type simHost struct {
	name string
	nc   *nats.Conn
	// replicas are the VMs this host is the recovery host of.
	replicas []string
}

const scaleDiskSize = "64MiB"

func primaryHost(i int) string   { return fmt.Sprintf("hp%02d", i+1) }
func secondaryHost(i int) string { return fmt.Sprintf("hs%02d", i+1) }

// openScaleWorld starts the control plane and the hosts, builds the fabric
// and brings every VM to Protected as agents would.
func openScaleWorld(ctx context.Context, cfg Config, out io.Writer) (w *scaleWorld, err error) {
	w = &scaleWorld{cfg: cfg, out: out, hosts: map[string]*simHost{}}
	defer func() {
		if err != nil {
			err = errors.Join(err, w.Close())
		}
	}()
	start := time.Now()
	logger := cfg.Logger
	if w.w, err = world.Open(ctx, world.Config{Dir: cfg.Data, ClientName: "siterecovery-scale", Logger: logger}); err != nil {
		return w, err
	}
	for i := range cfg.Hosts / 2 {
		for _, name := range []string{primaryHost(i), secondaryHost(i)} {
			nc, err := controlplane.Connect(w.w.URL(), "siterecovery-agent-"+name, logger)
			if err != nil {
				return w, err
			}
			w.hosts[name] = &simHost{name: name, nc: nc}
		}
	}
	if err := w.fabric(); err != nil {
		return w, err
	}
	loops, stop := context.WithCancel(context.Background())
	w.stop = stop
	for _, h := range w.hosts {
		w.wg.Add(1)
		go func() { defer w.wg.Done(); w.heartbeats(loops, h) }()
	}
	fmt.Fprintf(out, "scale: fabric of %d hosts in %s; protecting %d VMs\n", cfg.Hosts, time.Since(start).Round(time.Millisecond), cfg.VMs)
	start = time.Now()
	if err := w.protectAll(ctx); err != nil {
		return w, err
	}
	fmt.Fprintf(out, "scale: %d VMs Protected in %s\n", cfg.VMs, time.Since(start).Round(time.Millisecond))
	for _, h := range w.hosts {
		if len(h.replicas) > 0 {
			w.wg.Add(1)
			go func() { defer w.wg.Done(); w.points(loops, h) }()
		}
	}
	return w, nil
}

// fabric registers the sites and hosts, one cloud per host, a 30 s policy
// and a pairing from each primary cloud to its secondary twin; then every
// host's first heartbeat makes it reachable.
func (w *scaleWorld) fabric() error {
	type cmd struct {
		subject string
		body    map[string]any
	}
	cmds := []cmd{
		{"sr.cmd.site.register", map[string]any{"name": world.SitePrimary}},
		{"sr.cmd.site.register", map[string]any{"name": world.SiteSecondary}},
		{"sr.cmd.policy.create", map[string]any{"name": "p30", "copy_frequency": w.cfg.PointEvery.String(),
			"retention": "24h", "app_consistent_every": "4h"}},
	}
	for i := range w.cfg.Hosts / 2 {
		p, s := primaryHost(i), secondaryHost(i)
		cmds = append(cmds,
			cmd{"sr.cmd.host.register", map[string]any{"name": p, "site": "primary"}},
			cmd{"sr.cmd.host.register", map[string]any{"name": s, "site": "secondary"}},
			cmd{"sr.cmd.cloud.create", map[string]any{"name": "c" + p, "site": "primary", "hosts": []string{p}}},
			cmd{"sr.cmd.cloud.create", map[string]any{"name": "c" + s, "site": "secondary", "hosts": []string{s}}},
			cmd{"sr.cmd.pairing.create", map[string]any{"source": "c" + p, "target": "c" + s, "policy": "p30"}})
	}
	for _, c := range cmds {
		if _, err := world.Request(w.w.Conn(), c.subject, c.body); err != nil {
			return err
		}
	}
	for _, h := range w.hosts {
		if err := w.heartbeat(h); err != nil {
			return err
		}
	}
	return nil
}

func (w *scaleWorld) heartbeat(h *simHost) error {
	_, err := world.Request(h.nc, agentproto.ReportSubject(h.name, agentproto.VerbHeartbeat),
		agentproto.HeartbeatReport{Agent: "scale-sim", Time: time.Now().UTC()})
	return err
}

// heartbeats sends h's heartbeat every 3 s, as agents do (unreachable after
// 15 s of silence).
func (w *scaleWorld) heartbeats(ctx context.Context, h *simHost) {
	t := time.NewTicker(3 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		w.count(w.heartbeat(h))
	}
}

// count records a report's outcome; only the first error is kept.
func (w *scaleWorld) count(err error) {
	if err == nil {
		w.reports.Add(1)
		return
	}
	w.refused.Add(1)
	w.firstErr.CompareAndSwap(nil, &err)
}

// protectAll creates and protects the VMs, 16 at a time.
func (w *scaleWorld) protectAll(ctx context.Context) error {
	n := w.cfg.Hosts / 2
	w.vms = make([]scaleVM, w.cfg.VMs)
	for i := range w.vms {
		w.vms[i] = scaleVM{name: fmt.Sprintf("vm%05d", i), source: primaryHost(i % n), recovery: secondaryHost(i % n)}
		h := w.hosts[w.vms[i].recovery]
		h.replicas = append(h.replicas, w.vms[i].name)
	}
	jobs := make(chan scaleVM)
	errs := make(chan error, 16)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for vm := range jobs {
				if err := w.protect(vm); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	var err error
feed:
	for _, vm := range w.vms {
		select {
		case jobs <- vm:
		case err = <-errs:
			break feed
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	close(errs)
	for e := range errs {
		err = errors.Join(err, e)
	}
	return err
}

// protect creates one VM and reports, as its hosts' agents do, the disks,
// the initial replication's progress and its end.
func (w *scaleWorld) protect(vm scaleVM) error {
	src, dst := w.hosts[vm.source], w.hosts[vm.recovery]
	agent := func(h *simHost, verb string, body any) error {
		_, err := world.Request(h.nc, agentproto.ReportSubject(h.name, verb), body)
		return err
	}
	size, err := handlers.ParseSize(scaleDiskSize)
	if err != nil {
		return err
	}
	steps := []func() error{
		func() error {
			_, err := world.Request(w.w.Conn(), "sr.cmd.vm.create", map[string]any{"name": vm.name, "host": vm.source, "disk": []string{scaleDiskSize}})
			return err
		},
		func() error {
			return agent(src, agentproto.VerbDiskProvisioned, agentproto.DiskProvisionedReport{VM: vm.name, Disk: "disk0",
				Role: events.DiskRoleSource, Image: "/sim/" + vm.source + "/" + vm.name + "/disk0.img", Epoch: 1})
		},
		func() error {
			_, err := world.Request(w.w.Conn(), "sr.cmd.vm.enable", map[string]any{"vm": vm.name})
			return err
		},
		func() error {
			return agent(dst, agentproto.VerbDiskProvisioned, agentproto.DiskProvisionedReport{VM: vm.name, Disk: "disk0",
				Role: events.DiskRoleReplica, Image: "/sim/" + vm.recovery + "/" + vm.name + "/disk0.replica", Epoch: 1})
		},
		func() error {
			return agent(src, agentproto.VerbIRProgress, agentproto.IRProgressReport{VM: vm.name, DoneBytes: size / 2, TotalBytes: size})
		},
		func() error {
			return agent(src, agentproto.VerbIRCompleted, agentproto.IRCompletedReport{VM: vm.name, SentBytes: size})
		},
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return fmt.Errorf("protect %s: %w", vm.name, err)
		}
	}
	return nil
}

// points reports a recovery point of each of h's replicas every
// PointEvery, spread evenly over the interval, each report in its own
// goroutine as independent VMs' cycles are; when 64 are still waiting for
// their reply, the point is skipped and counted.
func (w *scaleWorld) points(ctx context.Context, h *simHost) {
	every := w.cfg.PointEvery / time.Duration(len(h.replicas))
	t := time.NewTicker(every)
	defer t.Stop()
	inflight := make(chan struct{}, 64)
	var wg sync.WaitGroup
	defer wg.Wait()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		vm, cycle := h.replicas[n%len(h.replicas)], uint64(n/len(h.replicas)+1)
		select {
		case inflight <- struct{}{}:
		default: // the control plane is behind: this cycle's point is late
			w.skipped.Add(1)
			continue
		}
		wg.Add(1)
		go func() {
			defer func() { <-inflight; wg.Done() }()
			w.count(w.point(h, vm, cycle))
		}()
	}
}

func (w *scaleWorld) point(h *simHost, vm string, cycle uint64) error {
	now := time.Now().UTC()
	defer func() {
		w.latMu.Lock()
		w.pointLat = append(w.pointLat, time.Since(now))
		w.latMu.Unlock()
	}()
	_, err := world.Request(h.nc, agentproto.ReportSubject(h.name, agentproto.VerbRecoveryPoint), agentproto.RecoveryPointReport{
		CommandID: fmt.Sprintf("rp-%s-%d", vm, cycle), VM: vm, ID: fmt.Sprintf("rp-%06d", cycle), Time: now,
		AppConsistent: cycle%480 == 1, Cycle: cycle, Epoch: 1, Bytes: 1 << 20,
		Roots: map[string]string{"disk0": fmt.Sprintf("%016x", now.UnixNano())},
	})
	return err
}

// Close stops the hosts and the control plane; it is safe twice.
func (w *scaleWorld) Close() error {
	w.closeOnce.Do(func() {
		if w.stop != nil {
			w.stop()
			w.wg.Wait()
		}
		var errs []error
		for _, h := range w.hosts {
			h.nc.Close()
		}
		if w.w != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			errs = append(errs, w.w.Close(ctx))
		}
		w.closeErr = errors.Join(errs...)
	})
	return w.closeErr
}
