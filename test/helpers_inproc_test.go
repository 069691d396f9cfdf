package test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events/jetstream"
	"github.com/siterecovery/siterecovery/events/jetstream/jstest"
	"github.com/siterecovery/siterecovery/handlers"
	"github.com/siterecovery/siterecovery/hostsync"
	"github.com/siterecovery/siterecovery/hostsync/nbd"
	"github.com/siterecovery/siterecovery/projections"
	"github.com/siterecovery/siterecovery/test/world"
)

// inprocWorld is what `serve` and two `siterecovery agent`s run, in this
// process, on one embedded NATS server: a control plane (the log, the
// projections, the command service with the agents' reports and the
// reachability sweeper, the failover reports, the process manager) and the
// agents of hv01 (site primary) and hv02 (site secondary). The control
// plane keeps its files under dir, so it can be restarted on them while the
// agents run.
type inprocWorld struct {
	t      testing.TB
	ctx    context.Context
	logger zerolog.Logger
	srv    *server.Server
	opts   inprocOpts
	dir    string
	cp     *inprocPlane
	p      *plane
	agents map[string]*siteAgent
	dirs   map[string]string
}

// inprocOpts shape an inprocWorld.
type inprocOpts struct {
	// failoverTimeout is the process manager's (default 60 s).
	failoverTimeout time.Duration
	// hooks are the agents' report hooks, by host.
	hooks map[string]func(ctx context.Context, verb string) error
}

// inprocPlane is one run of the control plane.
type inprocPlane struct {
	nc     *nats.Conn
	log    *jetstream.Log
	store  *projections.Store
	svc    *handlers.Service
	agents *handlers.AgentHandlers
	pm     *handlers.PM
	stop   context.CancelFunc
	wg     sync.WaitGroup

	once sync.Once
	err  error
}

// inprocDiskSize is web01's disk d0.
const inprocDiskSize = 8 << 20

// mustInprocWorld starts the server and the control plane.
func mustInprocWorld(t testing.TB, o inprocOpts) *inprocWorld {
	t.Helper()
	needQEMU(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if o.failoverTimeout == 0 {
		o.failoverTimeout = time.Minute
	}
	w := &inprocWorld{t: t, ctx: ctx, logger: zerolog.Nop(), opts: o, dir: t.TempDir(),
		agents: map[string]*siteAgent{}, dirs: map[string]string{}}
	w.srv = jstest.MustRunServer(t)
	w.cp = w.openPlane()
	w.p = newPlane(t, w.srv.ClientURL())
	return w
}

// openPlane opens the control plane on w.dir, as openControlPlane does.
func (w *inprocWorld) openPlane() *inprocPlane {
	w.t.Helper()
	t, ctx := w.t, w.ctx
	cp := &inprocPlane{nc: jstest.MustConnect(t, w.srv.ClientURL())}
	t.Cleanup(func() { cp.close(context.Background()) })
	var err error
	cp.log, err = jetstream.Open(ctx, cp.nc, jetstream.Config{Logger: w.logger})
	require.NoError(t, err)
	cp.store, err = projections.Open(ctx, filepath.Join(w.dir, "projections.db"), cp.log, w.logger)
	require.NoError(t, err)
	cp.svc = handlers.New(cp.log, cp.store, w.logger)
	cp.agents = handlers.NewAgentHandlers(cp.log, handlers.DefaultUnreachableAfter, w.logger)
	cp.svc.Extend(cp.agents)
	cp.svc.Extend(handlers.NewFailoverReports(cp.log, cp.store, w.logger))
	require.NoError(t, cp.svc.Open(ctx, cp.nc))
	cp.pm = handlers.NewPM(cp.log, handlers.PMConfig{Dir: filepath.Join(w.dir, "pm"), FailoverTimeout: w.opts.failoverTimeout,
		Tick: 50 * time.Millisecond}, w.logger)
	require.NoError(t, cp.pm.Open(ctx))
	sweepCtx, stop := context.WithCancel(context.Background())
	cp.stop = stop
	cp.wg.Go(func() { cp.agents.RunSweeper(sweepCtx, cp.hostNames) })
	return cp
}

// hostNames names the registered hosts, from the read model.
func (cp *inprocPlane) hostNames() []string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := cp.store.Query(ctx, "hosts", nil)
	if err != nil {
		return nil
	}
	hosts, _ := res.([]projections.HostView)
	var names []string
	for _, h := range hosts {
		names = append(names, h.Name)
	}
	return names
}

// close stops the control plane in serve's order; safe twice.
func (cp *inprocPlane) close(ctx context.Context) error {
	cp.once.Do(func() {
		cp.stop()
		cp.wg.Wait()
		cp.err = errors.Join(cp.svc.Close(ctx), cp.pm.Close(ctx), cp.store.Close(), cp.log.Close())
		cp.nc.Close()
	})
	return cp.err
}

// restartPlane stops the control plane and opens it again on its files.
func (w *inprocWorld) restartPlane() {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(w.ctx, 30*time.Second)
	defer cancel()
	require.NoError(w.t, w.cp.close(ctx))
	w.cp = w.openPlane()
}

// startAgent starts host's agent as `siterecovery agent` runs it (default
// heartbeat period), on its own connection and log.
func (w *inprocWorld) startAgent(host string) *siteAgent {
	w.t.Helper()
	t := w.t
	w.dirs[host] = shortDir(t)
	ag, err := world.StartAgent(w.ctx, w.srv.ClientURL(), host, w.dirs[host], world.AgentOptions{
		IRChunk: 1 << 20, ResendAfter: 2 * time.Second, DiskBootID: "inproc-boot", ReportHook: w.opts.hooks[host], Logger: w.logger,
	})
	require.NoError(t, err)
	a := &siteAgent{agent: ag}
	t.Cleanup(func() { a.close(context.Background()) })
	w.agents[host] = a
	return a
}

// fabric registers two sites, their hosts and clouds, a 1 s policy, the
// pairing and web01 on hv01.
func (w *inprocWorld) fabric() {
	for _, c := range []struct {
		subject string
		body    obj
	}{
		{"sr.cmd.site.register", obj{"name": "primary"}},
		{"sr.cmd.site.register", obj{"name": "secondary"}},
		{"sr.cmd.host.register", obj{"name": "hv01", "site": "primary"}},
		{"sr.cmd.host.register", obj{"name": "hv02", "site": "secondary"}},
		{"sr.cmd.cloud.create", obj{"name": "gold", "site": "primary", "hosts": []string{"hv01"}}},
		{"sr.cmd.cloud.create", obj{"name": "gold-dr", "site": "secondary", "hosts": []string{"hv02"}}},
		{"sr.cmd.policy.create", obj{"name": "fast", "copy_frequency": "1s", "retention": "24h", "compression": true}},
		{"sr.cmd.pairing.create", obj{"source": "gold", "target": "gold-dr", "policy": "fast"}},
		{"sr.cmd.vm.create", obj{"name": vmName, "host": "hv01", "disks": []obj{{"name": diskName, "size": inprocDiskSize}}}},
	} {
		w.p.must(c.subject, c.body)
	}
}

// startedTogether starts the agents, then builds the fabric (their first
// heartbeats come before their hosts are registered), writes 1 MiB to
// web01's disk and returns its model.
func (w *inprocWorld) startedTogether() *nbdDisk {
	w.t.Helper()
	w.startAgent("hv01")
	w.startAgent("hv02")
	w.fabric()
	w.p.waitVM(vmName, 30*time.Second, "source disk served over NBD", func(v vmView) bool {
		return len(v.Disks) == 1 && v.Disks[0].NBDURL != ""
	})
	d := &nbdDisk{t: w.t, export: hostsync.ExportName(vmName, diskName), model: make([]byte, inprocDiskSize)}
	w.write("hv01", d, 64<<10, []int64{0, 1 << 20, 5 << 20}, []byte{0x11, 0x22, 0x33})
	return d
}

// write writes len(pat) runs of length bytes through host's export of d,
// then a flush; the model takes them.
func (w *inprocWorld) write(host string, d *nbdDisk, length int, offs []int64, pats []byte) {
	w.t.Helper()
	c, err := nbd.Dial("unix", filepath.Join(w.dirs[host], "nbd.sock"), d.export)
	require.NoError(w.t, err, "dial %s on %s", d.export, host)
	defer c.Close()
	writeRuns(w.t, c, d, length, offs, pats)
}

// readExport reads host's whole export of d.
func (w *inprocWorld) readExport(host string, d *nbdDisk) []byte {
	w.t.Helper()
	c, err := nbd.Dial("unix", filepath.Join(w.dirs[host], "nbd.sock"), d.export)
	require.NoError(w.t, err, "dial %s on %s", d.export, host)
	defer c.Close()
	out := make([]byte, c.Size())
	for off := int64(0); off < c.Size(); off += 1 << 20 {
		_, err := c.ReadAt(out[off:min(off+1<<20, c.Size())], off)
		require.NoError(w.t, err, "read at %d", off)
	}
	return out
}

// servers names the hosts whose agent serves d now.
func (w *inprocWorld) servers(d *nbdDisk) []string {
	var out []string
	for _, h := range []string{"hv01", "hv02"} {
		if a := w.agents[h]; a != nil && slices.Contains(a.agent.Exports(), d.export) {
			out = append(out, h)
		}
	}
	return out
}

// protect enables web01 and waits until it is Protected.
func (w *inprocWorld) protect() {
	w.t.Helper()
	w.p.must("sr.cmd.vm.enable", obj{"vm": vmName})
	w.p.waitVM(vmName, 60*time.Second, "Protected", func(v vmView) bool { return v.ProtectionState == "Protected" })
}

// command sends a VM command and returns its job.
func (w *inprocWorld) command(verb string) string {
	w.t.Helper()
	var res struct {
		Job string `json:"job"`
	}
	require.NoError(w.t, json.Unmarshal(w.p.must("sr.cmd.vm."+verb, obj{"vm": vmName}), &res))
	require.NotEmpty(w.t, res.Job, "%s: no job", verb)
	return res.Job
}

// inprocJob is the part of sr.q.job the tests read.
type inprocJob struct {
	State  string       `json:"state"`
	Errors []string     `json:"errors"`
	Steps  []inprocStep `json:"steps"`
}

type inprocStep struct {
	Name   string `json:"name"`
	State  string `json:"state"`
	Detail string `json:"detail"`
}

// step is the job's last step named name (ok false: none).
func (j inprocJob) step(name string) (inprocStep, bool) {
	for i := len(j.Steps) - 1; i >= 0; i-- {
		if j.Steps[i].Name == name {
			return j.Steps[i], true
		}
	}
	return inprocStep{}, false
}

// waitJob polls the job until cond holds, failing after d with the last
// answer.
func (w *inprocWorld) waitJob(id string, d time.Duration, what string, cond func(inprocJob) bool) inprocJob {
	w.t.Helper()
	deadline := time.Now().Add(d)
	var last inprocJob
	for {
		code, reply, err := w.p.request("sr.q.job", obj{"job": id}, 5*time.Second)
		if err == nil && code == "" {
			last = inprocJob{}
			require.NoError(w.t, json.Unmarshal(reply, &last))
			if cond(last) {
				return last
			}
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("job %s: %s: not within %s; last: %+v", id, what, d, last)
		}
		time.Sleep(50 * time.Millisecond) // polling the read model with a deadline
	}
}

// waitJobEnded waits until the job is no longer InProgress and returns it.
func (w *inprocWorld) waitJobEnded(id string, d time.Duration) inprocJob {
	w.t.Helper()
	return w.waitJob(id, d, "ended", func(j inprocJob) bool { return j.State != "" && j.State != "InProgress" })
}
