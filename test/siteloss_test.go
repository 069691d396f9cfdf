package test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/agentproto"
	"github.com/siterecovery/siterecovery/events/jetstream/jstest"
	"github.com/siterecovery/siterecovery/hostsync"
	"github.com/siterecovery/siterecovery/hostsync/natsbus"
	"github.com/siterecovery/siterecovery/test/world"
)

// TestSiteLossUnplannedFailoverOnTheSurvivors is the site-loss drill of
// issue 5: a three-server cluster tagged by site, SR_EVENTS R3, the delta
// stream of the secondary placed on the secondary's server; web01 runs on
// hv01 at the primary and replicates to hv02 at the secondary. The whole
// primary site goes (its server, its control plane, hv01); the secondary
// and the witness keep the quorum, and an unplanned failover requested at
// the secondary's control plane serves web01 from hv02 with the bytes of
// the last recovery point.
func TestSiteLossUnplannedFailoverOnTheSurvivors(t *testing.T) {
	start := time.Now()
	w := mustSiteWorld(t)
	t.Logf("cluster and two control planes up in %s", durationMS(time.Since(start)))
	primary, secondary := newPlane(t, w.servers["primary"].ClientURL()), newPlane(t, w.servers["secondary"].ClientURL())
	siteLossFabric(primary)
	w.requireDeltaStreamAtItsSite("secondary")
	w.requireDeltaStreamAtItsSite("primary")
	w.requireUnplacedWithoutTaggedServer("elsewhere")

	hv01, hv02 := w.startAgent("hv01", "primary"), w.startAgent("hv02", "secondary")
	export := hostsync.ExportName(vmName, diskName)
	watch := watchExport(t, export, hv01, hv02)
	d := w.protectedDisk(primary, export)
	atPoint := w.lastPoint(d)

	lost := time.Now()
	w.loseSite("primary", "hv01")
	_, err := w.nbdConn("hv01", export)
	require.Error(t, err, "hv01 still serves web01 after its site is lost")
	leader := waitStreamLeaderIn(w.ctx, t, w.planes["secondary"].nc, "SR_EVENTS", 30*time.Second,
		w.servers["secondary"].Name(), w.servers["witness"].Name())
	t.Logf("primary site lost; SR_EVENTS led by %s %s after the loss", leader, durationMS(time.Since(lost)))

	asked := time.Now()
	secondary.must("sr.cmd.vm.unplanned_failover", obj{"vm": vmName, "recovery_point": "latest", "command_id": "siteloss-1"})
	accepted := time.Since(asked)
	vm := w.waitVM("secondary", vmName, 30*time.Second, "failed over to hv02", func(vm events.VM) bool {
		return vm.State == events.FailoverCommitPending && vm.ActiveHost == "hv02" && vm.Epoch == 2
	})
	pending := time.Since(asked)
	require.Eventually(t, func() bool { return slices.Contains(hv02.agent.Exports(), export) }, 10*time.Second,
		5*time.Millisecond, "hv02 serves web01 after the failover")
	serving := time.Since(asked)
	requireSameBytes(t, atPoint, w.readAll("hv02", export), "served by hv02 after the site loss vs the last recovery point")
	t.Logf("unplanned failover from the command: accepted %s, FailoverCommitPending %s, served by hv02 %s, "+
		"the whole disk read back through NBD %s", durationMS(accepted), durationMS(pending), durationMS(serving),
		durationMS(time.Since(asked)))
	require.Equal(t, "secondary", vm.ActiveSite)

	watch.end()
	require.Positive(t, watch.seen.Load())
	require.Zero(t, watch.twice.Load(), "web01 served by two hosts at once")
	w.requireFailoverCompleted(vm)
	t.Logf("drill total %s", durationMS(time.Since(start)))
}

// siteLossFabric registers the two sites (the witness runs only a NATS
// server), their hosts and clouds, a 1 s policy, the pairing and web01.
func siteLossFabric(p *plane) {
	f := world.Fabric{Source: "hv01", Recovery: "hv02", Policy: obj{"name": "p1", "copy_frequency": "1s", "retention": "24h", "compression": true}}
	for _, c := range f.Commands() {
		p.must(c.Subject, c.Body)
	}
	p.must("sr.cmd.vm.create", obj{"name": vmName, "host": "hv01", "disks": []obj{{"name": diskName, "size": siteLossDisk}}})
}

// siteLossDisk is the size of web01's disk d0.
const siteLossDisk = 8 << 20

// requireDeltaStreamAtItsSite creates the site's delta stream as the
// control plane does (before any agent could) and checks it lives on the
// site's server alone.
func (w *siteWorld) requireDeltaStreamAtItsSite(site string) {
	w.t.Helper()
	js := w.planes[site].js(w.t)
	placed, err := natsbus.EnsureSiteDeltaStream(w.ctx, js, site)
	require.NoError(w.t, err)
	require.True(w.t, placed, "delta stream of %s placed at its site", site)
	leader, others := streamPeers(w.ctx, w.t, w.planes[site].nc, agentproto.DeltaStream(site))
	require.Equal(w.t, w.servers[site].Name(), leader, "%s is on the %s server", agentproto.DeltaStream(site), site)
	require.Empty(w.t, others, "%s has one copy", agentproto.DeltaStream(site))
}

// requireUnplacedWithoutTaggedServer checks the fallback: no server is
// tagged with the site, so its delta stream is created unplaced, R1.
func (w *siteWorld) requireUnplacedWithoutTaggedServer(site string) {
	w.t.Helper()
	js := w.planes["secondary"].js(w.t)
	for range 2 { // the second time finds it
		placed, err := natsbus.EnsureSiteDeltaStream(w.ctx, js, site)
		require.NoError(w.t, err)
		require.False(w.t, placed, "no server carries %s", hostsync.SiteTag(site))
	}
	s, err := js.Stream(w.ctx, agentproto.DeltaStream(site))
	require.NoError(w.t, err)
	require.Nil(w.t, s.CachedInfo().Config.Placement)
	require.Equal(w.t, 1, s.CachedInfo().Config.Replicas)
}

// protectedDisk waits until hv01 serves web01, writes, enables protection
// and waits for Protected with a recovery point.
func (w *siteWorld) protectedDisk(p *plane, export string) *nbdDisk {
	w.t.Helper()
	require.Eventually(w.t, func() bool { return slices.Contains(w.agents["hv01"].agent.Exports(), export) },
		20*time.Second, 10*time.Millisecond, "hv01 serves web01")
	d := &nbdDisk{t: w.t, export: export, model: make([]byte, siteLossDisk)}
	w.write("hv01", d, 1<<20, []int64{0}, []byte{0x11})
	w.write("hv01", d, 64<<10, []int64{5 << 20}, []byte{0x22})
	p.must("sr.cmd.vm.enable", obj{"vm": vmName})
	w.waitVM("primary", vmName, 30*time.Second, "protected with a point", func(vm events.VM) bool {
		return vm.State == events.Protected && len(vm.RecoveryPoints) > 0
	})
	return d
}

// lastPoint writes through hv01's export, stops, waits for a recovery
// point closed after the writes and returns the bytes of that point.
func (w *siteWorld) lastPoint(d *nbdDisk) []byte {
	w.t.Helper()
	w.write("hv01", d, 64<<10, []int64{1 << 20, 3 << 20, 7<<20 + 4096}, []byte{0x5a, 0x6b, 0x7c})
	w.write("hv01", d, 4096, []int64{2 << 20, 6 << 20}, []byte{0x3d, 0x4e})
	mark := time.Now()
	w.waitVM("primary", vmName, 20*time.Second, "a recovery point after the last write", func(vm events.VM) bool {
		rp, ok := vm.RecoveryPoint("latest")
		return ok && rp.Time.After(mark)
	})
	requireSameBytes(w.t, d.model, w.readAll("hv01", d.export), "hv01's disk vs the writes")
	return append([]byte(nil), d.model...)
}

// requireFailoverCompleted checks the log: one unplanned failover_completed
// at epoch 2 on hv02 from the point the VM names, and one host per epoch.
func (w *siteWorld) requireFailoverCompleted(vm events.VM) {
	w.t.Helper()
	recs, err := w.planes["secondary"].log.Load(w.ctx, events.VMAgg(vmName))
	require.NoError(w.t, err)
	var done []events.FailoverCompletedData
	for _, r := range recs {
		if d, ok := r.Data.(events.FailoverCompletedData); ok {
			done = append(done, d)
		}
	}
	require.Len(w.t, done, 1, "failover_completed events")
	require.Equal(w.t, "unplanned", done[0].Mode)
	require.Equal(w.t, "hv02", done[0].Host)
	require.Equal(w.t, uint64(2), done[0].Epoch)
	require.Equal(w.t, vm.FailoverPoint, done[0].RecoveryPoint)
	requireOneHostPerEpoch(w.t, recs)
	raw, err := json.Marshal(done[0])
	require.NoError(w.t, err)
	w.t.Logf("failover_completed %s", raw)
}

// TestDeltaStreamPlacementOnOneServer: a single server (the embedded
// default) takes the site placement and keeps the stream itself.
func TestDeltaStreamPlacementOnOneServer(t *testing.T) {
	nc := jstest.MustConnect(t, jstest.MustRunServer(t).ClientURL())
	js, err := natsjs.New(nc)
	require.NoError(t, err)
	ctx := context.Background()
	placed, err := natsbus.EnsureSiteDeltaStream(ctx, js, "secondary")
	require.NoError(t, err)
	require.True(t, placed)
	s, err := js.Stream(ctx, agentproto.DeltaStream("secondary"))
	require.NoError(t, err)
	require.Equal(t, natsjs.WorkQueuePolicy, s.CachedInfo().Config.Retention)
	require.Equal(t, []string{"sr.delta.secondary.>"}, s.CachedInfo().Config.Subjects)

	err = natsbus.EnsureDeltaStreamAt(ctx, js, "dr", natsbus.DeltaStreamConfig{Replicas: -1})
	require.Error(t, err, "negative replicas")
	_, err = js.Stream(ctx, agentproto.DeltaStream("dr"))
	require.ErrorIs(t, err, natsjs.ErrStreamNotFound, "a refused config creates nothing")
}
