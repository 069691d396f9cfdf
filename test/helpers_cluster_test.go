package test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/jetstream"
	"github.com/siterecovery/siterecovery/events/jetstream/jstest"
	"github.com/siterecovery/siterecovery/handlers"
	"github.com/siterecovery/siterecovery/hostsync"
	"github.com/siterecovery/siterecovery/hostsync/nbd"
	"github.com/siterecovery/siterecovery/projections"
	"github.com/siterecovery/siterecovery/test/world"
)

// The site-loss drill runs in this process: three embedded NATS servers
// clustered and tagged by site (docs/operations.md), a control plane at
// the primary and one at the secondary (what `serve --nats` runs: the log,
// the projections, the command service with the agents' reports, the
// process manager), and the host agents, each on its own site's server.

// clusterSites are the failure domains, server i tagged site:<clusterSites[i]>.
var clusterSites = []string{"primary", "secondary", "witness"}

// siteWorld is the three-site cluster and what runs on it.
type siteWorld struct {
	t       testing.TB
	ctx     context.Context
	logger  zerolog.Logger
	servers map[string]siteServer // by site
	planes  map[string]*sitePlane // control planes by site
	agents  map[string]*siteAgent // by host
	dirs    map[string]string     // agents' data dirs by host
}

// siteServer is one server of the cluster: embedded in this process
// (*server.Server, lost by Shutdown, which first hands over the raft groups
// it leads) or a process of its own (*natsProc, lost by kill -9).
type siteServer interface {
	ClientURL() string
	Name() string
}

// mustSiteWorld starts the cluster embedded in this process and a control
// plane at the primary and at the secondary site.
func mustSiteWorld(t testing.TB) *siteWorld {
	t.Helper()
	w := newSiteWorld(t)
	for i, s := range jstest.MustRunCluster(t, len(clusterSites), siteTags()) {
		w.servers[clusterSites[i]] = s
	}
	w.startPlanes()
	return w
}

// mustSiteWorldProcs is mustSiteWorld with each server a process of its
// own, so that losing a site is a kill -9 of its server.
func mustSiteWorldProcs(t testing.TB) *siteWorld {
	t.Helper()
	w := newSiteWorld(t)
	for i, p := range mustRunProcCluster(t, siteTags()) {
		w.servers[clusterSites[i]] = p
	}
	w.startPlanes()
	return w
}

func newSiteWorld(t testing.TB) *siteWorld {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	logger := zerolog.Nop()
	if os.Getenv("SR_SITELOSS_LOG") != "" { // the drill's components' logs, in the test's log
		logger = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel).With().Timestamp().Logger()
	}
	return &siteWorld{t: t, ctx: ctx, logger: logger, servers: map[string]siteServer{},
		planes: map[string]*sitePlane{}, agents: map[string]*siteAgent{}, dirs: map[string]string{}}
}

func siteTags() []string {
	tags := make([]string, len(clusterSites))
	for i, s := range clusterSites {
		tags[i] = hostsync.SiteTag(s)
	}
	return tags
}

func (w *siteWorld) startPlanes() {
	for _, site := range []string{"primary", "secondary"} {
		w.planes[site] = w.startPlane(site)
	}
}

// ownServerOnly are the options of a site's clients: they reconnect to
// their own site's server only, so that a lost site's clients stay lost
// (nats.go would otherwise move to a survivor the server told them of).
func ownServerOnly() []nats.Option {
	return []nats.Option{nats.IgnoreDiscoveredServers(), nats.MaxReconnects(-1), nats.ReconnectWait(25 * time.Millisecond)}
}

// sitePlane is one control plane, connected to its site's server.
type sitePlane struct {
	nc    *nats.Conn
	log   *jetstream.Log
	store *projections.Store
	svc   *handlers.Service
	pm    *handlers.PM

	once sync.Once
	err  error
}

func (w *siteWorld) startPlane(site string) *sitePlane {
	w.t.Helper()
	t, ctx, logger := w.t, w.ctx, w.logger.With().Str("plane", site).Logger()
	nc, err := nats.Connect(w.servers[site].ClientURL(), ownServerOnly()...)
	require.NoError(t, err, "connect the %s control plane", site)
	t.Cleanup(nc.Close)
	p := &sitePlane{nc: nc}
	t.Cleanup(func() {
		// Bounded: after a leader loss nats.go's ordered consumer under the
		// process manager can retry its reset for long, and PM.Close waits
		// for it (the open defect of docs/operations.md, "Losing a site").
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := p.close(ctx); err != nil {
			t.Logf("control plane %s: close: %v", site, err)
		}
	})
	p.log, err = jetstream.Open(ctx, p.nc, jetstream.Config{Replicas: 3, Logger: logger})
	require.NoError(t, err, "event log of the %s control plane", site)
	p.store, err = projections.Open(ctx, filepath.Join(t.TempDir(), "projections.db"), p.log, logger)
	require.NoError(t, err)
	p.svc = handlers.New(p.log, p.store, logger)
	p.svc.Extend(handlers.NewAgentHandlers(p.log, handlers.DefaultUnreachableAfter, logger))
	p.svc.Extend(handlers.NewFailoverReports(p.log, p.store, logger))
	require.NoError(t, p.svc.Open(ctx, p.nc))
	p.pm = handlers.NewPM(p.log, handlers.PMConfig{Dir: t.TempDir(), FailoverTimeout: 45 * time.Second, Tick: 50 * time.Millisecond}, logger)
	require.NoError(t, p.pm.Open(ctx))
	return p
}

// js is a JetStream context on the control plane's connection.
func (p *sitePlane) js(t testing.TB) natsjs.JetStream {
	t.Helper()
	js, err := natsjs.New(p.nc)
	require.NoError(t, err)
	return js
}

// close stops the control plane in serve's order; safe twice.
func (p *sitePlane) close(ctx context.Context) error {
	p.once.Do(func() {
		p.err = errors.Join(p.svc.Close(ctx), p.pm.Close(ctx), p.store.Close(), p.log.Close())
		p.nc.Close()
	})
	return p.err
}

// siteAgent is a host agent on its own connection and log.
type siteAgent struct {
	agent *world.Agent
	// closed is set once Close returned: the agent serves nothing then
	// (its export list is no longer looked at).
	closed atomic.Bool
}

// startAgent starts host's agent connected to site's server.
func (w *siteWorld) startAgent(host, site string) *siteAgent {
	w.t.Helper()
	t := w.t
	if w.dirs[host] == "" {
		w.dirs[host] = shortDir(t)
	}
	ag, err := world.StartAgent(w.ctx, w.servers[site].ClientURL(), host, w.dirs[host], world.AgentOptions{
		HeartbeatEvery: time.Second, IRChunk: 1 << 20, ResendAfter: 2 * time.Second, DiskBootID: "siteloss-boot",
		LogReplicas: 3, Logger: w.logger, NATSOptions: ownServerOnly(),
	})
	require.NoError(t, err)
	a := &siteAgent{agent: ag}
	t.Cleanup(func() { a.close(context.Background()) })
	w.agents[host] = a
	return a
}

// close stops the agent; safe twice (Agent.Close is).
func (a *siteAgent) close(ctx context.Context) error {
	err := a.agent.Close(ctx)
	a.closed.Store(true)
	return err
}

// loseSite takes a whole site down at once: its server, then what ran
// there (the control plane and the agents), which have nothing left to
// talk to. Their close errors are logged: a dead site cannot stop cleanly.
func (w *siteWorld) loseSite(site string, hosts ...string) {
	w.t.Helper()
	switch s := w.servers[site].(type) {
	case *natsProc:
		s.kill()
	case *server.Server:
		s.Shutdown()
		s.WaitForShutdown()
	}
	ctx, cancel := context.WithTimeout(w.ctx, 15*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, h := range hosts {
		wg.Go(func() {
			if err := w.agents[h].close(ctx); err != nil {
				w.t.Logf("agent %s of the lost site %s: close: %v", h, site, err)
			}
		})
	}
	if p := w.planes[site]; p != nil {
		wg.Go(func() {
			if err := p.close(ctx); err != nil {
				w.t.Logf("control plane of the lost site %s: close: %v", site, err)
			}
		})
	}
	wg.Wait()
}

// vm folds a VM from the log as site's control plane sees it.
func (w *siteWorld) vm(site, name string) events.VM {
	w.t.Helper()
	recs, err := w.planes[site].log.Load(w.ctx, events.VMAgg(name))
	require.NoError(w.t, err)
	return events.FoldVM(recs)
}

// waitVM waits until cond holds for the VM, as site's control plane sees
// it, failing after d with what the VM looked like.
func (w *siteWorld) waitVM(site, name string, d time.Duration, what string, cond func(events.VM) bool) events.VM {
	w.t.Helper()
	deadline := time.Now().Add(d)
	for {
		vm := w.vm(site, name)
		if cond(vm) {
			return vm
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("%s: not within %s; vm %s state %s epoch %d active %s points %d", what, d, name,
				vm.State, vm.Epoch, vm.ActiveHost, len(vm.RecoveryPoints))
		}
		time.Sleep(50 * time.Millisecond) // polling the log with a deadline
	}
}

// streamPeers names the leader and the other peers of a stream.
func streamPeers(ctx context.Context, t testing.TB, nc *nats.Conn, name string) (leader string, others []string) {
	t.Helper()
	js, err := natsjs.New(nc)
	require.NoError(t, err)
	s, err := js.Stream(ctx, name)
	require.NoError(t, err, "stream %s", name)
	c := s.CachedInfo().Cluster
	require.NotNil(t, c, "stream %s has no cluster info", name)
	for _, p := range c.Replicas {
		others = append(others, p.Name)
	}
	return c.Leader, others
}

// waitStreamLeaderIn waits until the stream has a leader among servers.
func waitStreamLeaderIn(ctx context.Context, t testing.TB, nc *nats.Conn, name string, d time.Duration, servers ...string) string {
	t.Helper()
	deadline := time.Now().Add(d)
	js, err := natsjs.New(nc)
	require.NoError(t, err)
	last := "no answer"
	for time.Now().Before(deadline) {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		s, err := js.Stream(actx, name)
		cancel()
		switch {
		case err != nil:
			last = err.Error()
		case s.CachedInfo().Cluster == nil || s.CachedInfo().Cluster.Leader == "":
			last = "no leader"
		case slices.Contains(servers, s.CachedInfo().Cluster.Leader):
			return s.CachedInfo().Cluster.Leader
		default:
			last = "leader " + s.CachedInfo().Cluster.Leader
		}
		time.Sleep(50 * time.Millisecond) // polling the stream's state with a deadline
	}
	t.Fatalf("stream %s: no leader among %v within %s: %s", name, servers, d, last)
	return ""
}

// nbdDisk is a disk written and read through an agent's NBD export with
// the project's NBD client, and a model of its bytes.
type nbdDisk struct {
	t      testing.TB
	export string
	model  []byte
}

// nbdConn dials export on host's NBD socket.
func (w *siteWorld) nbdConn(host, export string) (*nbd.Client, error) {
	return nbd.Dial("unix", filepath.Join(w.dirs[host], "nbd.sock"), export)
}

// write writes len(pat) runs: run i is length bytes of pat[i] at offs[i];
// then a flush. The model takes them once all are acknowledged.
func (w *siteWorld) write(host string, d *nbdDisk, length int, offs []int64, pats []byte) {
	w.t.Helper()
	c, err := w.nbdConn(host, d.export)
	require.NoError(w.t, err, "dial %s on %s", d.export, host)
	defer c.Close()
	writeRuns(w.t, c, d, length, offs, pats)
}

// writeRuns writes len(pat) runs through c: run i is length bytes of
// pat[i] at offs[i]; then a flush. d's model takes each run once written.
func writeRuns(t testing.TB, c *nbd.Client, d *nbdDisk, length int, offs []int64, pats []byte) {
	t.Helper()
	for i, off := range offs {
		buf := make([]byte, length)
		for j := range buf {
			buf[j] = pats[i]
		}
		require.NoError(t, c.WriteAt(buf, off, false), "write at %d", off)
		copy(d.model[off:], buf)
	}
	require.NoError(t, c.Flush())
}

// readAll reads a whole export of host.
func (w *siteWorld) readAll(host, export string) []byte {
	w.t.Helper()
	c, err := w.nbdConn(host, export)
	require.NoError(w.t, err, "dial %s on %s", export, host)
	defer c.Close()
	out := make([]byte, c.Size())
	for off := int64(0); off < c.Size(); off += 1 << 20 {
		_, err := c.ReadAt(out[off:min(off+1<<20, c.Size())], off)
		require.NoError(w.t, err, "read at %d", off)
	}
	return out
}

// exportWatch samples the running agents' exports until stopped and
// counts the samples in which more than one host served the export.
type exportWatch struct {
	twice atomic.Int64
	seen  atomic.Int64
	stop  chan struct{}
	wg    sync.WaitGroup
}

func watchExport(t testing.TB, export string, agents ...*siteAgent) *exportWatch {
	x := &exportWatch{stop: make(chan struct{})}
	x.wg.Go(func() {
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-x.stop:
				return
			case <-tick.C:
			}
			n := 0
			for _, a := range agents {
				if !a.closed.Load() && slices.Contains(a.agent.Exports(), export) {
					n++
				}
			}
			x.seen.Add(1)
			if n > 1 {
				x.twice.Add(1)
			}
		}
	})
	t.Cleanup(x.end)
	return x
}

func (x *exportWatch) end() {
	select {
	case <-x.stop:
	default:
		close(x.stop)
	}
	x.wg.Wait()
}

// requireOneHostPerEpoch folds the VM's history event by event and checks
// that at every epoch one host at most was the VM's active host.
func requireOneHostPerEpoch(t testing.TB, recs []events.Record) {
	t.Helper()
	hosts := map[uint64]string{}
	for i := range recs {
		vm := events.FoldVM(recs[:i+1])
		if vm.ActiveHost == "" {
			continue
		}
		if h, ok := hosts[vm.Epoch]; ok && h != vm.ActiveHost {
			t.Fatalf("epoch %d active on %s and on %s (event %d %s)", vm.Epoch, h, vm.ActiveHost, recs[i].Seq, recs[i].Type())
		}
		hosts[vm.Epoch] = vm.ActiveHost
	}
}

// durationMS formats a measured duration for the test log.
func durationMS(d time.Duration) string { return fmt.Sprintf("%d ms", d.Milliseconds()) }
