package handlers

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/agentproto"
)

// viewAfter folds web01 (hv01 → hv11, one disk d0, network lan-a),
// protected, then evs, each event under job "job-<index>".
func viewAfter(evs ...events.Data) vmView {
	recs := []events.Record{
		{Seq: 1, Data: events.VMCreatedData{Name: "web01", Host: "hv01", Site: "primary", Cloud: "gold", Disks: []events.DiskSpec{{Name: "d0", Size: 1 << 20}}, Networks: []string{"lan-a"}}},
		{Seq: 2, Data: events.ProtectionEnableStartedData{SourceHost: "hv01", SourceSite: "primary", RecoveryHost: "hv11", TargetSite: "dr"}},
		{Seq: 3, Data: events.InitialReplicationCompletedData{}},
		{Seq: 4, Data: events.RecoveryPointCreatedData{ID: "rp1", Cycle: 1, Epoch: 1, Time: time.Now()}},
	}
	for i, ev := range evs {
		seq := uint64(len(recs) + 1)
		recs = append(recs, events.Record{Seq: seq, Meta: events.Meta{CorrelationID: "job-" + string(rune('a'+i))}, Data: ev})
	}
	return foldView(recs)
}

var (
	planned   = events.FailoverStartedData{Mode: events.FailoverPlanned, FromHost: "hv01", ToHost: "hv11", FromSite: "primary", ToSite: "dr"}
	unplanned = events.FailoverStartedData{Mode: events.FailoverUnplanned, RecoveryPoint: "rp1", FromHost: "hv01", ToHost: "hv11", FromSite: "primary", ToSite: "dr"}
	stopped   = events.SourceStoppedData{Host: "hv01", FinalCycle: 2}
	completed = events.FailoverCompletedData{Mode: events.FailoverPlanned, RecoveryPoint: "rpf", Epoch: 2, Host: "hv11", Site: "dr"}
	readyDisk = []agentproto.ReadyDisk{{Disk: "d0", Image: "/i/d0.img", NBDURL: "nbd://x"}}
)

func types(d decision) []events.Type {
	var out []events.Type
	for _, ev := range d.evs {
		out = append(out, ev.EventType())
	}
	return out
}

func TestDecideVMStoppedTable(t *testing.T) {
	t.Parallel()
	r := agentproto.VMStoppedReport{ReportHead: agentproto.ReportHead{VM: "web01", Epoch: 1}, FinalCycle: 2}
	for _, c := range []struct {
		name string
		v    vmView
		host string
		r    agentproto.VMStoppedReport
		want []events.Type
		err  error
	}{
		{"planned", viewAfter(planned), "hv01", r, []events.Type{events.SourceStopped}, nil},
		{"repeat", viewAfter(planned, stopped), "hv01", r, nil, nil},
		{"no failover", viewAfter(), "hv01", r, nil, events.ErrInvalidState},
		{"not the source", viewAfter(planned), "hv11", r, nil, ErrUnauthorized},
		{"wrong epoch", viewAfter(planned), "hv01", agentproto.VMStoppedReport{ReportHead: agentproto.ReportHead{VM: "web01", Epoch: 2}, FinalCycle: 2}, nil, events.ErrInvalidArgument},
		{"planned without cycle", viewAfter(planned), "hv01", agentproto.VMStoppedReport{ReportHead: agentproto.ReportHead{VM: "web01", Epoch: 1}}, nil, events.ErrInvalidArgument},
		{"unplanned, late", viewAfter(unplanned, completed), "hv01", agentproto.VMStoppedReport{ReportHead: agentproto.ReportHead{VM: "web01", Epoch: 1}}, []events.Type{events.SourceStopped}, nil},
		{"naming the failover's job", viewAfter(planned), "hv01", withJob(r, "job-a"), []events.Type{events.SourceStopped}, nil},
		{"planned, after the step timed out", viewAfter(planned, timedOut), "hv01", withJob(r, "job-a"), []events.Type{events.SourceStopped}, nil},
		{"an earlier failover's, after a new one started", viewAfter(planned, timedOut, planned), "hv01", withJob(r, "job-a"), nil, nil},
		{"after the failover was cancelled", viewAfter(planned, timedOut, events.FailoverCancelledData{Epoch: 2}), "hv01", withJob(r, "job-a"), nil, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, err := decideVMStopped(c.v, c.host, c.r)
			if c.err != nil {
				require.ErrorIs(t, err, c.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, c.want, types(d))
			if len(d.evs) > 0 {
				require.Equal(t, "job-a", d.job, "the failover's job")
			}
		})
	}
}

// timedOut is a planned failover's failure at stop_source (its deadline).
var timedOut = events.FailoverFailedData{Mode: events.FailoverPlanned, Step: StepStopSource, Reason: "timeout"}

func withJob(r agentproto.VMStoppedReport, job string) agentproto.VMStoppedReport {
	r.Job = job
	return r
}

func TestDecideFailoverReadyTable(t *testing.T) {
	t.Parallel()
	r := agentproto.FailoverReadyReport{ReportHead: agentproto.ReportHead{VM: "web01", Epoch: 2, Job: "given"}, RecoveryPoint: "rpf", Disks: readyDisk}
	nets := map[string]string{"lan-a": "lan-b"}
	failed := events.FailoverFailedData{Mode: events.FailoverPlanned, Step: StepReady, Reason: "timeout"}
	for _, c := range []struct {
		name string
		v    vmView
		host string
		mod  func(*agentproto.FailoverReadyReport)
		want []events.Type
		err  error
	}{
		{"planned", viewAfter(planned, stopped), "hv11", nil, []events.Type{events.FailoverCompleted, events.DiskProvisioned}, nil},
		{"planned before stop", viewAfter(planned), "hv11", nil, nil, events.ErrInvalidState},
		{"unplanned", viewAfter(unplanned), "hv11", nil, []events.Type{events.FailoverCompleted, events.DiskProvisioned}, nil},
		{"repeat", viewAfter(planned, stopped, completed), "hv11", nil, nil, nil},
		{"after failure", viewAfter(planned, stopped, failed), "hv11", nil, nil, events.ErrInvalidState},
		{"no failover", viewAfter(), "hv11", nil, nil, events.ErrInvalidState},
		{"from the source", viewAfter(planned, stopped), "hv01", nil, nil, ErrUnauthorized},
		{"old epoch", viewAfter(planned, stopped), "hv11", func(r *agentproto.FailoverReadyReport) { r.Epoch = 1 }, nil, events.ErrInvalidArgument},
		{"missing disk", viewAfter(planned, stopped), "hv11", func(r *agentproto.FailoverReadyReport) { r.Disks = nil }, nil, events.ErrInvalidArgument},
		{"unknown disk", viewAfter(planned, stopped), "hv11", func(r *agentproto.FailoverReadyReport) { r.Disks = []agentproto.ReadyDisk{{Disk: "d9", Image: "x"}} }, nil, events.ErrInvalidArgument},
		{"no image", viewAfter(planned, stopped), "hv11", func(r *agentproto.FailoverReadyReport) { r.Disks = []agentproto.ReadyDisk{{Disk: "d0"}} }, nil, events.ErrInvalidArgument},
		{"planned without point", viewAfter(planned, stopped), "hv11", func(r *agentproto.FailoverReadyReport) { r.RecoveryPoint = "" }, nil, events.ErrInvalidArgument},
	} {
		t.Run(c.name, func(t *testing.T) {
			rr := r
			if c.mod != nil {
				c.mod(&rr)
			}
			d, err := decideFailoverReady(c.v, c.host, rr, nets)
			if c.err != nil {
				require.ErrorIs(t, err, c.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, c.want, types(d))
			if len(d.evs) > 0 {
				require.Equal(t, "given", d.job)
				fc := d.evs[0].(events.FailoverCompletedData)
				require.Equal(t, uint64(2), fc.Epoch)
				require.Equal(t, []events.NIC{{SourceNetwork: "lan-a", TargetNetwork: "lan-b"}}, fc.NICs)
			}
		})
	}
	d, err := decideFailoverReady(viewAfter(unplanned), "hv11", agentproto.FailoverReadyReport{ReportHead: agentproto.ReportHead{VM: "web01", Epoch: 2}, Disks: readyDisk}, nil)
	require.NoError(t, err)
	fc := d.evs[0].(events.FailoverCompletedData)
	require.Equal(t, "rp1", fc.RecoveryPoint, "the failover's point by default")
	require.Equal(t, []events.NIC{{SourceNetwork: "lan-a"}}, fc.NICs, "unmapped: no network")
	require.Equal(t, "job-a", d.job)
}

func TestDecideTestReportsTable(t *testing.T) {
	t.Parallel()
	start := events.TestFailoverStartedData{RecoveryPoint: "rp1", Host: "hv11"}
	r := agentproto.TestFailoverReadyReport{ReportHead: agentproto.ReportHead{VM: "web01"}, Disks: readyDisk}
	for _, c := range []struct {
		name        string
		v           vmView
		ready, done []events.Type
		readyErr    error
		doneErr     error
	}{
		{"in progress", viewAfter(start), []events.Type{events.DiskProvisioned, events.TestFailoverCompleted}, nil, nil, events.ErrInvalidState},
		{"completed", viewAfter(start, events.TestFailoverCompletedData{}), nil, nil, nil, events.ErrInvalidState},
		{"cleaning", viewAfter(start, events.TestFailoverCompletedData{}, events.TestCleanupStartedData{}), nil, []events.Type{events.TestFailoverCleanedUp}, events.ErrInvalidState, nil},
		{"cleaned", viewAfter(start, events.TestFailoverCompletedData{}, events.TestCleanupStartedData{}, events.TestFailoverCleanedUpData{}), nil, nil, events.ErrInvalidState, nil},
		{"no test", viewAfter(), nil, nil, ErrUnauthorized, ErrUnauthorized},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, err := decideTestFailoverReady(c.v, "hv11", r)
			if c.readyErr != nil {
				require.ErrorIs(t, err, c.readyErr)
			} else {
				require.NoError(t, err)
				require.Equal(t, c.ready, types(d))
			}
			d, err = decideTestCleanupDone(c.v, "hv11", agentproto.TestCleanupDoneReport{ReportHead: r.ReportHead})
			if c.doneErr != nil {
				require.ErrorIs(t, err, c.doneErr)
			} else {
				require.NoError(t, err)
				require.Equal(t, c.done, types(d))
			}
		})
	}
	_, err := decideTestFailoverReady(viewAfter(start), "hv01", r)
	require.ErrorIs(t, err, ErrUnauthorized)
}

func TestDecideResyncAndDivergenceTable(t *testing.T) {
	t.Parallel()
	reverseResync := events.ReverseReplicationStartedData{SourceHost: "hv11", RecoveryHost: "hv01", Resync: true}
	reverseCopy := events.ReverseReplicationStartedData{SourceHost: "hv11", RecoveryHost: "hv01"}
	failedOver := []events.Data{unplanned, completed, events.FailoverCommittedData{Mode: events.FailoverUnplanned}}
	for _, c := range []struct {
		name     string
		v        vmView
		progress bool
		done     []events.Type
		err      error
	}{
		{"resync", viewAfter(events.ResyncRequiredData{}, events.ResyncStartedData{}), true, []events.Type{events.ResyncCompleted}, nil},
		{"reverse resync", viewAfter(append(failedOver, reverseResync)...), true, []events.Type{events.ResyncCompleted, events.ReverseReplicationCompleted}, nil},
		{"reverse without resync", viewAfter(append(failedOver, reverseCopy)...), false, nil, events.ErrInvalidState},
		{"protected (repeat)", viewAfter(), false, nil, nil},
		{"paused", viewAfter(events.ReplicationPausedData{}), false, nil, events.ErrInvalidState},
	} {
		t.Run(c.name, func(t *testing.T) {
			head := agentproto.ReportHead{VM: "web01"}
			d, err := decideResyncProgress(c.v, "hv11", agentproto.ResyncProgressReport{ReportHead: head, DoneBytes: 1, TotalBytes: 2})
			if c.progress {
				require.NoError(t, err)
				require.Equal(t, []events.Type{events.ResyncProgress}, types(d))
			} else {
				require.ErrorIs(t, err, events.ErrInvalidState)
			}
			d, err = decideResyncCompleted(c.v, "hv11", agentproto.ResyncCompletedReport{ReportHead: head, SentBytes: 3})
			if c.err != nil {
				require.ErrorIs(t, err, c.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, c.done, types(d))
		})
	}
	_, err := decideResyncCompleted(viewAfter(events.ResyncStartedData{}), "hv99", agentproto.ResyncCompletedReport{})
	require.ErrorIs(t, err, ErrUnauthorized)

	v := viewAfter(failedOver...)
	div := agentproto.DivergenceReport{ReportHead: agentproto.ReportHead{VM: "web01", Epoch: 1}, Blocks: 3}
	d, err := decideDivergence(v, "hv01", div)
	require.NoError(t, err)
	require.Equal(t, []events.Type{events.DivergenceDetected}, types(d))
	_, err = decideDivergence(v, "hv11", div)
	require.ErrorIs(t, err, events.ErrInvalidArgument, "the active host")
	_, err = decideDivergence(v, "hv01", agentproto.DivergenceReport{ReportHead: agentproto.ReportHead{VM: "web01", Epoch: 2}})
	require.ErrorIs(t, err, events.ErrInvalidArgument, "the current epoch")
	none := agentproto.DivergenceReport{ReportHead: agentproto.ReportHead{VM: "web01", Epoch: 1}}
	d0, err := decideDivergence(v, "hv01", none)
	require.NoError(t, err)
	require.Empty(t, d0.evs, "no block written after the point is no divergence")
	v = viewAfter(append(failedOver, d.evs[0])...)
	d, err = decideDivergence(v, "hv01", div)
	require.NoError(t, err)
	require.Empty(t, d.evs, "once per host and epoch")
}
