package handlers

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/agentproto"
	"github.com/siterecovery/siterecovery/events/jetstream"
	"github.com/siterecovery/siterecovery/events/jetstream/jstest"
	"github.com/siterecovery/siterecovery/projections"
)

// pmFixture is a control plane on an embedded JetStream server: the log,
// the projections, the service with the agent and failover reports, and a
// process manager. The test plays the agents.
type pmFixture struct {
	*fixture
	pm    *PM
	cfg   PMConfig
	store *projections.Store
	// jobWait bounds job (10 s if 0).
	jobWait time.Duration
}

// mustStartPM starts the control plane with a process manager configured
// by cfg (a short tick unless set).
func mustStartPM(t testing.TB, cfg PMConfig) *pmFixture {
	t.Helper()
	ctx := context.Background()
	srv := jstest.MustRunServer(t)
	nc := jstest.MustConnect(t, jstest.URL(srv))
	jl, err := jetstream.Open(ctx, nc, jetstream.Config{Logger: zerolog.Nop()})
	require.NoError(t, err)
	t.Cleanup(func() { jl.Close() })
	store, err := projections.Open(ctx, filepath.Join(t.TempDir(), "projections.db"), jl, zerolog.Nop())
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, store.Close()) })
	svc := New(jl, store, zerolog.Nop())
	svc.Extend(NewAgentHandlers(jl, time.Hour, zerolog.Nop()))
	svc.Extend(NewFailoverReports(jl, store, zerolog.Nop()))
	require.NoError(t, svc.Open(ctx, nc))
	t.Cleanup(func() { require.NoError(t, svc.Close(ctx)) })
	f := &pmFixture{fixture: &fixture{t: t, url: jstest.URL(srv), nc: nc, log: jl, svc: svc}, cfg: cfg, store: store}
	f.pm = f.startPM(cfg)
	return f
}

// startPM opens one more process manager on the fixture's log.
func (f *pmFixture) startPM(cfg PMConfig) *PM {
	f.t.Helper()
	if cfg.Tick == 0 {
		cfg.Tick = 10 * time.Millisecond
	}
	pm := NewPM(f.log, cfg, zerolog.Nop())
	require.NoError(f.t, pm.Open(context.Background()))
	f.t.Cleanup(func() {
		require.NoError(f.t, pm.Close(context.Background()))
		require.NoError(f.t, pm.Close(context.Background()), "Close twice")
	})
	return pm
}

// agent sends a report of host that must be accepted.
func (f *pmFixture) agent(host, verb string, body any) agentproto.Reply {
	f.t.Helper()
	r := f.request(agentproto.ReportSubject(host, verb), body)
	require.Empty(f.t, r.Code, "%s %s: %s", host, verb, r.Message)
	var res agentproto.Reply
	require.NoError(f.t, json.Unmarshal(r.Raw, &res))
	return res
}

// agentRefused sends a report of host that must be refused with code.
func (f *pmFixture) agentRefused(host, verb string, body any, code string) {
	f.t.Helper()
	r := f.request(agentproto.ReportSubject(host, verb), body)
	require.Equal(f.t, code, r.Code, "%s %s: %s", host, verb, r.Message)
}

// protect enables vm (on hv01 → hv11), completes its initial replication,
// makes both hosts reachable and records the recovery point rp-<vm>-1.
func (f *pmFixture) protect(vm string) {
	f.t.Helper()
	f.ok("sr.cmd.vm.enable", m{"vm": vm})
	f.agent("hv01", agentproto.VerbIRCompleted, m{"vm": vm, "sent_bytes": 4096})
	f.agent("hv01", agentproto.VerbHeartbeat, m{"time": time.Now()})
	f.agent("hv11", agentproto.VerbHeartbeat, m{"time": time.Now()})
	f.point(vm, "hv11", "rp-"+vm+"-1", 1, 1)
	require.Equal(f.t, events.Protected, f.vm(vm).State)
}

// protectUnheard protects vm as protect does, with no heartbeat: both
// hosts stay unknown.
func (f *pmFixture) protectUnheard(vm string) {
	f.t.Helper()
	f.ok("sr.cmd.vm.enable", m{"vm": vm})
	f.agent("hv01", agentproto.VerbIRCompleted, m{"vm": vm, "sent_bytes": 4096})
	f.point(vm, "hv11", "rp-"+vm+"-1", 1, 1)
	require.Equal(f.t, events.Protected, f.vm(vm).State)
}

// point reports a recovery point of vm from host.
func (f *pmFixture) point(vm, host, id string, cycle, epoch uint64) {
	f.t.Helper()
	f.agent(host, agentproto.VerbRecoveryPoint, m{"vm": vm, "id": id, "time": time.Now(), "cycle": cycle, "epoch": epoch, "bytes": 512})
}

// vm folds the VM's view from the log.
func (f *pmFixture) vm(name string) vmView {
	f.t.Helper()
	recs, err := f.log.Load(context.Background(), events.VMAgg(name))
	require.NoError(f.t, err)
	return foldView(recs)
}

// waitVM waits until cond holds for the VM.
func (f *pmFixture) waitVM(name string, what string, cond func(v vmView) bool) vmView {
	f.t.Helper()
	var v vmView
	require.Eventually(f.t, func() bool { v = f.vm(name); return cond(v) }, 10*time.Second, 5*time.Millisecond,
		"vm %s never reached: %s (state %s, test %s)", name, what, v.State, v.TestState)
	return v
}

// count counts the events of type t on agg.
func (f *pmFixture) count(agg events.Aggregate, t events.Type) int {
	f.t.Helper()
	recs, err := f.log.Load(context.Background(), agg)
	require.NoError(f.t, err)
	n := 0
	for _, r := range recs {
		if r.Type() == t {
			n++
		}
	}
	return n
}

// job waits until the job is in one of states, and returns it.
func (f *pmFixture) job(id string, states ...string) projections.Job {
	f.t.Helper()
	var j projections.Job
	var last reply
	wait := f.jobWait
	if wait == 0 {
		wait = 10 * time.Second
	}
	for deadline := time.Now().Add(wait); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		last = f.request("sr.q.job", m{"job": id, "after_seq": f.lastSeq()})
		if last.Code != "" {
			continue
		}
		j = projections.Job{}
		require.NoError(f.t, json.Unmarshal(last.Raw, &j))
		if slices.Contains(states, j.State) {
			return j
		}
	}
	f.dumpLog()
	require.FailNow(f.t, "job never reached its state", "job %s never reached %v: %s %s %s", id, states, last.Code, last.Message, last.Raw)
	return j
}

// dumpLog logs every event of the log.
func (f *pmFixture) dumpLog() {
	cur, err := f.log.Follow(context.Background(), 1)
	require.NoError(f.t, err)
	defer cur.Close()
	last := f.lastSeq()
	for seq := uint64(0); seq < last; {
		recs, err := cur.Next(context.Background(), 100)
		require.NoError(f.t, err)
		for _, r := range recs {
			seq = r.Seq
			f.t.Logf("%d %s %s cmd=%s corr=%s %+v", r.Seq, r.Aggregate, r.Type(), r.Meta.CommandID, r.Meta.CorrelationID, r.Data)
		}
	}
}

func stepNames(j projections.Job) []string {
	var out []string
	for _, s := range j.Steps {
		out = append(out, s.Name)
	}
	return out
}

// disks is the ready disks of the fixture VMs (one disk, disk0).
func disks(vm, host, suffix string) []m {
	return []m{{"disk": "disk0", "image": fmt.Sprintf("/data/%s/%s/disk0%s.img", host, vm, suffix), "nbd_url": fmt.Sprintf("nbd+unix:///%s-disk0%s?socket=/data/%s/nbd.sock", vm, suffix, host)}}
}

// failoverPlanned plays both agents of a planned failover of vm started by
// job: the source stops, the recovery host serves at epoch.
func (f *pmFixture) playPlanned(vm, job string, epoch uint64) {
	f.t.Helper()
	f.agent("hv01", agentproto.VerbVMStopped, m{"vm": vm, "job": job, "epoch": epoch - 1, "final_cycle": 7, "roots": m{"disk0": "abcd"}})
	f.agent("hv11", agentproto.VerbFailoverReady, m{"vm": vm, "job": job, "epoch": epoch, "recovery_point": "rp-final", "disks": disks(vm, "hv11", "")})
}
