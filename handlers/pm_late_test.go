package handlers

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/agentproto"
)

// TestPlannedFailoverLateStopThenRetry: the source's vm_stopped arrives
// after the failover timed out at stop_source. It is recorded under the
// failed job (the source is stopped), the VM stays PlannedFailoverFailed at
// its epoch, and planned_failover again completes from there.
func TestPlannedFailoverLateStopThenRetry(t *testing.T) {
	t.Parallel()
	f := mustStartPM(t, PMConfig{FailoverTimeout: 300 * time.Millisecond})
	f.buildFabric()
	f.protect("web01")
	f.ok("sr.cmd.vm.planned_failover", m{"vm": "web01", "command_id": "pf-late"})
	f.waitVM("web01", "PlannedFailoverFailed", func(v vmView) bool { return v.State == events.PlannedFailoverFailed })

	f.agent("hv01", agentproto.VerbVMStopped, m{"vm": "web01", "job": "pf-late", "epoch": 1, "final_cycle": 5, "roots": m{"disk0": "abcd"}})
	v := f.vm("web01")
	require.Equal(t, events.PlannedFailoverFailed, v.State, "the failure stays: the failover is over")
	require.Equal(t, uint64(1), v.Epoch)
	require.True(t, v.Failover.Stopped, "the late answer is recorded: the source is stopped")
	j := f.job("pf-late", events.JobFailed)
	require.Equal(t, []string{"failover_started", "failover_failed", "source_stopped"}, stepNames(j))
	require.True(t, strings.Contains(j.Steps[2].Detail, "after the failover failed"), j.Steps[2].Detail)

	f.ok("sr.cmd.vm.planned_failover", m{"vm": "web01", "command_id": "pf-again"})
	// The late answer to the first failover, repeated, is not the second's.
	f.agent("hv01", agentproto.VerbVMStopped, m{"vm": "web01", "job": "pf-late", "epoch": 1, "final_cycle": 5, "command_id": "late-again"})
	require.False(t, f.vm("web01").Failover.Stopped)
	f.playPlanned("web01", "pf-again", 2)
	f.job("pf-again", events.JobSucceeded)
	v = f.vm("web01")
	require.Equal(t, events.FailoverCommitPending, v.State)
	require.Equal(t, uint64(2), v.Epoch)
	require.Equal(t, "hv11", v.ActiveHost)
}

// TestPlannedFailoverCancelThenLateStop: a vm_stopped that arrives after
// the failed failover was cancelled records nothing: the source serves
// again at the new epoch.
func TestPlannedFailoverCancelThenLateStop(t *testing.T) {
	t.Parallel()
	f := mustStartPM(t, PMConfig{FailoverTimeout: 300 * time.Millisecond})
	f.buildFabric()
	f.protect("web01")
	f.ok("sr.cmd.vm.planned_failover", m{"vm": "web01", "command_id": "pf-late"})
	f.waitVM("web01", "PlannedFailoverFailed", func(v vmView) bool { return v.State == events.PlannedFailoverFailed })
	f.ok("sr.cmd.vm.cancel_failover", m{"vm": "web01", "command_id": "cancel-late"})
	f.job("cancel-late", events.JobSucceeded)

	res := f.agent("hv01", agentproto.VerbVMStopped, m{"vm": "web01", "job": "pf-late", "epoch": 1, "final_cycle": 5})
	require.Empty(t, res.Seqs)
	require.Zero(t, f.count(events.VMAgg("web01"), events.SourceStopped))
	v := f.vm("web01")
	require.Equal(t, events.Protected, v.State)
	require.Equal(t, uint64(2), v.Epoch)
	require.Equal(t, "hv01", v.ActiveHost)
}
