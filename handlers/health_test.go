package handlers

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/projections"
)

// healthWorld is a protected VM on a MemLog with real projections.
type healthWorld struct {
	t     *testing.T
	log   *events.MemLog
	store *projections.Store
	mon   *HealthMonitor
	n     int
}

func newHealthWorld(t *testing.T, state events.ProtectionState) *healthWorld {
	t.Helper()
	w := &healthWorld{t: t, log: events.NewMemLog()}
	store, err := projections.Open(context.Background(), filepath.Join(t.TempDir(), "p.db"), w.log, zerolog.Nop())
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, store.Close()) })
	w.store = store
	w.mon = NewHealthMonitor(w.log, store, HealthConfig{Every: time.Second, MinThreshold: time.Second}, zerolog.Nop())
	settings := events.PolicySettings{CopyFrequency: events.Duration(time.Second), Retention: events.Duration(time.Hour), RPOThreshold: events.Duration(10 * time.Second)}
	w.add(events.PolicyAgg("p1"), events.PolicyCreatedData{Name: "p1", PolicySettings: settings})
	w.add(events.HostAgg("hv01"), events.HostRegisteredData{Name: "hv01", Site: "a"}, events.HostReachableData{Name: "hv01", Since: time.Now()})
	w.add(events.HostAgg("hv02"), events.HostRegisteredData{Name: "hv02", Site: "b"}, events.HostReachableData{Name: "hv02", Since: time.Now()})
	w.add(events.VMAgg("web01"), events.VMCreatedData{Name: "web01", Host: "hv01", Site: "a", Cloud: "c", Disks: []events.DiskSpec{{Name: "d0", Size: 1 << 20}}},
		events.ProtectionEnableStartedData{Policy: "p1", Settings: settings, SourceHost: "hv01", SourceSite: "a", RecoveryHost: "hv02", TargetSite: "b"},
		events.InitialReplicationStartedData{TotalBytes: 1 << 20})
	if state == events.Protected {
		w.add(events.VMAgg("web01"), events.InitialReplicationCompletedData{})
	}
	return w
}

func (w *healthWorld) add(agg events.Aggregate, evs ...events.Data) {
	w.t.Helper()
	recs, err := w.log.Load(context.Background(), agg)
	require.NoError(w.t, err)
	var last uint64
	if len(recs) > 0 {
		last = recs[len(recs)-1].Seq
	}
	w.n++
	res, err := w.log.Append(context.Background(), agg, last, events.Meta{CommandID: fmt.Sprintf("cmd-%d", w.n)}, evs...)
	require.NoError(w.t, err)
	require.NoError(w.t, w.store.WaitFor(context.Background(), res.Last()))
}

func (w *healthWorld) point(id string, at time.Time) {
	w.add(events.VMAgg("web01"), events.RecoveryPointCreatedData{ID: id, Time: at, Cycle: uint64(w.n), Epoch: 1})
}

// sweep runs one sweep as of now and returns the VM's health afterwards.
func (w *healthWorld) sweep(now time.Time) string {
	w.t.Helper()
	require.NoError(w.t, w.mon.Sweep(context.Background(), now))
	last, err := w.log.LastSeq(context.Background())
	require.NoError(w.t, err)
	require.NoError(w.t, w.store.WaitFor(context.Background(), last))
	vm := events.FoldVM(mustLoad(w.t, w.log, events.VMAgg("web01")))
	return vm.Health
}

func mustLoad(t *testing.T, log events.Log, agg events.Aggregate) []events.Record {
	recs, err := log.Load(context.Background(), agg)
	require.NoError(t, err)
	return recs
}

// TestHealthRPOWarningIsSustainedAndClears: one late sweep raises nothing,
// a breach that lasts raises Warning once, a fresh point clears it.
func TestHealthRPOWarningIsSustainedAndClears(t *testing.T) {
	w := newHealthWorld(t, events.Protected)
	now := time.Now()
	w.point("rp-1", now.Add(-time.Minute))
	h := w.sweep(now)
	require.Equal(t, events.HealthNormal, h, "one sweep over the threshold is not yet an alert")
	h = w.sweep(now.Add(2 * time.Second))
	require.Equal(t, events.HealthWarning, h)
	before, _ := w.log.LastSeq(context.Background())
	h = w.sweep(now.Add(4 * time.Second))
	require.Equal(t, events.HealthWarning, h)
	after, _ := w.log.LastSeq(context.Background())
	require.Equal(t, before, after, "a standing Warning is not appended again")

	w.point("rp-2", time.Now())
	h = w.sweep(time.Now())
	require.Equal(t, events.HealthNormal, h, "the RPO is back under the threshold")
}

// TestHealthUnreachableHostIsCritical: a replication host that is
// unreachable makes the VM Critical; its return clears it.
func TestHealthUnreachableHostIsCritical(t *testing.T) {
	w := newHealthWorld(t, events.Protected)
	w.point("rp-1", time.Now())
	w.add(events.HostAgg("hv02"), events.HostUnreachableData{Name: "hv02", LastSeen: time.Now().Add(-time.Minute)})
	h := w.sweep(time.Now())
	require.Equal(t, events.HealthCritical, h)
	w.add(events.HostAgg("hv02"), events.HostReachableData{Name: "hv02", Since: time.Now()})
	w.point("rp-2", time.Now())
	h = w.sweep(time.Now())
	require.Equal(t, events.HealthNormal, h)
}

// TestHealthUnknownHostIsNotCritical: a replication host registered again
// and not heard from since (unknown) is not unreachable: no alert.
func TestHealthUnknownHostIsNotCritical(t *testing.T) {
	w := newHealthWorld(t, events.Protected)
	w.point("rp-1", time.Now())
	w.add(events.HostAgg("hv02"), events.HostUnregisteredData{Name: "hv02"}, events.HostRegisteredData{Name: "hv02", Site: "b"})
	h := w.sweep(time.Now())
	require.Equal(t, events.HealthNormal, h)
}

// TestHealthMutedDuringInitialReplication: no alert while the first copy
// runs, however old the VM is.
func TestHealthMutedDuringInitialReplication(t *testing.T) {
	w := newHealthWorld(t, events.InitialReplication)
	w.add(events.HostAgg("hv02"), events.HostUnreachableData{Name: "hv02", LastSeen: time.Now().Add(-time.Minute)})
	for i := range 3 {
		h := w.sweep(time.Now().Add(time.Duration(i) * 2 * time.Second))
		require.Equal(t, events.HealthNormal, h)
	}
}

// TestHealthLeavesReportedErrorsAlone: a Critical raised by an agent's
// error report is not cleared by the monitor.
func TestHealthLeavesReportedErrorsAlone(t *testing.T) {
	w := newHealthWorld(t, events.Protected)
	w.point("rp-1", time.Now())
	w.add(events.VMAgg("web01"), events.ReplicationErrorData{Host: "hv02", Code: "apply_failed", Message: "disk full"},
		events.HealthChangedData{Health: events.HealthCritical, Issues: []string{"apply_failed: disk full"}})
	h := w.sweep(time.Now())
	require.Equal(t, events.HealthCritical, h)
}
