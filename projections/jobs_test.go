package projections

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
)

// Agents report under their own command ids: the open job of the VM that
// the report belongs to takes it, and a job the state machine moved past
// is ended as Cancelled.
func TestJobsClaimAgentReportsAndEndSupersededOnes(t *testing.T) {
	log := events.NewMemLog()
	w := newWorld(t, log)
	w.buildFabric()
	vm := events.VMAgg("web01")
	w.emit(vm, "create", events.VMCreatedData{Name: "web01", Host: "hv01", Site: "primary", Cloud: "gold"})
	w.emit(vm, "enable-1", enableData("web01"))
	w.emit(vm, "agent-a", events.InitialReplicationStartedData{TotalBytes: 100})
	w.emit(vm, "agent-b", events.InitialReplicationProgressData{DoneBytes: 50, TotalBytes: 100})
	w.emit(vm, "disable-1", events.ProtectionDisableStartedData{})
	w.emit(vm, "agent-c", events.ProtectionDisabledData{})
	w.emit(vm, "enable-2", enableData("web01"))
	w.emit(vm, "agent-d", events.InitialReplicationStartedData{TotalBytes: 100})
	w.emit(vm, "agent-e", events.InitialReplicationCompletedData{SentBytes: 100})
	w.emit(vm, "tfo", events.TestFailoverStartedData{Host: "hv02"})
	w.emit(vm, "pfo", events.FailoverStartedData{Mode: events.FailoverPlanned, FromHost: "hv01", ToHost: "hv02"})
	w.emit(vm, "agent-f", events.FailoverFailedData{Mode: events.FailoverTest, Step: "start", Reason: "no memory"})
	last := w.emit(vm, "agent-g", events.FailoverCompletedData{Mode: events.FailoverPlanned, Epoch: 2, Host: "hv02", Site: "secondary"})
	s := mustOpen(t, "", log)
	waitFor(t, s, last)

	state := func(id string) Job { return queryInto[Job](t, s, "job", `{"job":"`+id+`"}`) }
	first := state("enable-1")
	require.Equal(t, events.JobCancelled, first.State)
	require.Equal(t, []string{"superseded by DisableProtection job disable-1"}, first.Errors)
	require.Len(t, first.Steps, 3)
	require.Equal(t, events.JobSucceeded, state("disable-1").State)
	second := state("enable-2")
	require.Equal(t, events.JobSucceeded, second.State)
	require.Equal(t, "initial_replication_completed", second.Steps[len(second.Steps)-1].Name)
	test := state("tfo")
	require.Equal(t, events.JobFailed, test.State)
	require.Equal(t, []string{"test failover failed at start: no memory"}, test.Errors)
	require.Equal(t, events.JobSucceeded, state("pfo").State)

	_, err := s.Query(t.Context(), "job", []byte(`{"job":"agent-a"}`))
	require.ErrorIs(t, err, events.ErrNotFound)
}
