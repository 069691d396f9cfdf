package events_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
)

func fold(evs ...events.Data) events.VM {
	recs := make([]events.Record, len(evs))
	for i, d := range evs {
		recs[i] = events.Record{Seq: uint64(10 + i), Aggregate: events.VMAgg("web01"), Data: d}
	}
	return events.FoldVM(recs)
}

func ops(names ...events.Operation) []events.Operation { return names }

var (
	vmCreated  = events.VMCreatedData{Name: "web01", Host: "hv01", Site: "primary", Cloud: "gold"}
	enabling   = events.ProtectionEnableStartedData{Pairing: "p", Policy: "p30", SourceHost: "hv01", SourceSite: "primary", RecoveryHost: "hv02", TargetSite: "secondary", TargetCloud: "gold-dr"}
	irStarted  = events.InitialReplicationStartedData{TotalBytes: 1 << 20}
	irDone     = events.InitialReplicationCompletedData{SentBytes: 1 << 20}
	planned    = events.FailoverStartedData{Mode: events.FailoverPlanned, FromHost: "hv01", ToHost: "hv02"}
	unplanned  = events.FailoverStartedData{Mode: events.FailoverUnplanned, FromHost: "hv01", ToHost: "hv02"}
	failedOver = events.FailoverCompletedData{Mode: events.FailoverPlanned, Epoch: 2, Host: "hv02", Site: "secondary", RecoveryPoint: "rp1"}
)

func protected(more ...events.Data) []events.Data {
	return append([]events.Data{vmCreated, enabling, irStarted, irDone}, more...)
}

// TestVMStateMachine folds the main transitions of the VM state machine and
// checks the state, the test sub-state, the epoch and the allowed
// operations after each.
func TestVMStateMachine(t *testing.T) {
	cases := []struct {
		name    string
		evs     []events.Data
		state   events.ProtectionState
		test    events.TestFailoverState
		epoch   uint64
		allowed []events.Operation
	}{
		{"created", []events.Data{vmCreated}, events.Unprotected, events.TestNone, 1, ops(events.OpEnable)},
		{"enabling", []events.Data{vmCreated, enabling}, events.EnablingProtection, events.TestNone, 1, ops(events.OpDisable)},
		{"enable failed", []events.Data{vmCreated, enabling, events.ProtectionEnableFailedData{Reason: "x"}}, events.EnablingFailed, events.TestNone, 1, ops(events.OpEnable, events.OpDisable)},
		{"initial replication", []events.Data{vmCreated, enabling, irStarted}, events.InitialReplication, events.TestNone, 1, ops(events.OpDisable)},
		{"protected", protected(), events.Protected, events.TestNone, 1, ops(events.OpDisable, events.OpPause, events.OpTestFailover, events.OpPlannedFailover, events.OpUnplannedFailover)},
		{"paused", protected(events.ReplicationPausedData{}), events.Paused, events.TestNone, 1, ops(events.OpDisable, events.OpResume, events.OpUnplannedFailover)},
		{"resumed", protected(events.ReplicationPausedData{}, events.ReplicationResumedData{}), events.Protected, events.TestNone, 1, ops(events.OpDisable, events.OpPause, events.OpTestFailover, events.OpPlannedFailover, events.OpUnplannedFailover)},
		{"resync required", protected(events.ResyncRequiredData{Reason: "log lost"}), events.ResyncRequiredState, events.TestNone, 1, ops(events.OpDisable, events.OpResync, events.OpUnplannedFailover)},
		{"resynchronizing", protected(events.ResyncRequiredData{}, events.ResyncStartedData{}), events.Resynchronizing, events.TestNone, 1, nil},
		{"resynced", protected(events.ResyncRequiredData{}, events.ResyncStartedData{}, events.ResyncCompletedData{}), events.Protected, events.TestNone, 1, ops(events.OpDisable, events.OpPause, events.OpTestFailover, events.OpPlannedFailover, events.OpUnplannedFailover)},
		{"test failover running", protected(events.TestFailoverStartedData{RecoveryPoint: "rp1"}), events.Protected, events.TestInProgress, 1, ops(events.OpDisable, events.OpPause, events.OpPlannedFailover, events.OpUnplannedFailover)},
		{"test failover done", protected(events.TestFailoverStartedData{}, events.TestFailoverCompletedData{}), events.Protected, events.TestCompleted, 1, ops(events.OpDisable, events.OpPause, events.OpTestCleanup, events.OpPlannedFailover, events.OpUnplannedFailover)},
		{"test cleaning up", protected(events.TestFailoverStartedData{}, events.TestFailoverCompletedData{}, events.TestCleanupStartedData{}), events.Protected, events.TestCleaningUp, 1, ops(events.OpDisable, events.OpPause, events.OpPlannedFailover, events.OpUnplannedFailover)},
		{"test cleaned up", protected(events.TestFailoverStartedData{}, events.TestFailoverCompletedData{}, events.TestCleanupStartedData{}, events.TestFailoverCleanedUpData{}), events.Protected, events.TestNone, 1, ops(events.OpDisable, events.OpPause, events.OpTestFailover, events.OpPlannedFailover, events.OpUnplannedFailover)},
		{"planned failover running", protected(planned), events.PlannedFailoverInProgress, events.TestNone, 1, nil},
		{"planned failover failed", protected(planned, events.FailoverFailedData{Mode: events.FailoverPlanned}), events.PlannedFailoverFailed, events.TestNone, 1, ops(events.OpPlannedFailover, events.OpCancelFailover)},
		{"unplanned failover running", protected(unplanned), events.UnplannedFailoverInProgress, events.TestNone, 1, nil},
		{"unplanned failover failed", protected(unplanned, events.FailoverFailedData{Mode: events.FailoverUnplanned}), events.UnplannedFailoverFailed, events.TestNone, 1, ops(events.OpUnplannedFailover, events.OpCancelFailover)},
		{"commit pending", protected(planned, events.SourceStoppedData{}, failedOver), events.FailoverCommitPending, events.TestNone, 2, ops(events.OpChangeRecoveryPoint, events.OpCommit, events.OpCancelFailover)},
		{"cancelled", protected(planned, failedOver, events.FailoverCancelledData{Epoch: 3}), events.Protected, events.TestNone, 3, ops(events.OpDisable, events.OpPause, events.OpTestFailover, events.OpPlannedFailover, events.OpUnplannedFailover)},
		{"committed", protected(planned, failedOver, events.FailoverCommittedData{Mode: events.FailoverPlanned}), events.FailoverCommittedState, events.TestNone, 2, ops(events.OpReverse)},
		{"reversing", protected(planned, failedOver, events.FailoverCommittedData{}, events.ReverseReplicationStartedData{SourceHost: "hv02", RecoveryHost: "hv01"}), events.ReverseReplicationState, events.TestNone, 2, nil},
		{"reversed", protected(planned, failedOver, events.FailoverCommittedData{}, events.ReverseReplicationStartedData{}, events.ReverseReplicationCompletedData{}), events.Protected, events.TestNone, 2, ops(events.OpDisable, events.OpPause, events.OpTestFailover, events.OpPlannedFailover, events.OpUnplannedFailover)},
		{"disabling", protected(events.ProtectionDisableStartedData{}), events.DisablingProtection, events.TestNone, 1, nil},
		{"disabled", protected(events.ProtectionDisableStartedData{}, events.ProtectionDisabledData{}), events.Unprotected, events.TestNone, 1, ops(events.OpEnable)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			vm := fold(tc.evs...)
			require.True(t, vm.Exists())
			require.Equal(t, tc.state, vm.State)
			require.Equal(t, tc.test, vm.TestState)
			require.Equal(t, tc.epoch, vm.Epoch)
			require.Equal(t, tc.allowed, vm.Allowed())
			require.Equal(t, uint64(10+len(tc.evs)-1), vm.Version)
			for _, op := range events.VMOperations {
				err := vm.Check(op)
				if containsOp(tc.allowed, op) {
					require.NoError(t, err, op)
					continue
				}
				var stErr *events.StateError
				require.ErrorAs(t, err, &stErr, op)
				require.ErrorIs(t, err, events.ErrInvalidState)
				require.Contains(t, err.Error(), string(tc.state))
				require.Contains(t, err.Error(), string(op))
			}
		})
	}
}

func containsOp(list []events.Operation, op events.Operation) bool {
	for _, o := range list {
		if o == op {
			return true
		}
	}
	return false
}

func TestVMFoldDetails(t *testing.T) {
	var none events.VM
	require.False(t, none.Exists())
	require.Nil(t, none.Allowed())
	require.ErrorIs(t, none.Check(events.OpEnable), events.ErrInvalidState)

	at := time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)
	vm := fold(protected(
		events.RecoveryPointCreatedData{ID: "rp1", Time: at, Cycle: 1, Epoch: 1},
		events.RecoveryPointCreatedData{ID: "rp2", Time: at.Add(time.Minute), Cycle: 2, Epoch: 1, AppConsistent: true},
		events.RecoveryPointCreatedData{ID: "rp3", Time: at.Add(2 * time.Minute), Cycle: 3, Epoch: 1},
		events.RecoveryPointsPrunedData{IDs: []string{"rp1"}},
		events.HealthChangedData{Health: events.HealthWarning},
	)...)
	require.Equal(t, "hv02", vm.RecoveryHost)
	require.Equal(t, "secondary", vm.TargetSite)
	require.Equal(t, events.HealthWarning, vm.Health)
	require.Len(t, vm.RecoveryPoints, 2)
	latest, ok := vm.RecoveryPoint("latest")
	require.True(t, ok)
	require.Equal(t, "rp3", latest.ID)
	rp2, ok := vm.RecoveryPoint("rp2")
	require.True(t, ok)
	require.True(t, rp2.AppConsistent)
	_, ok = vm.RecoveryPoint("rp1")
	require.False(t, ok, "pruned")

	vm = fold(protected(planned, failedOver)...)
	require.Equal(t, "hv02", vm.ActiveHost)
	require.Equal(t, "secondary", vm.ActiveSite)
	vm.Apply(events.Record{Seq: 99, Data: events.FailoverCancelledData{Epoch: 3}})
	require.Equal(t, "hv01", vm.ActiveHost, "cancel brings the VM back to its source")
	require.Equal(t, uint64(3), vm.Epoch)

	vm = fold(protected(events.ProtectionDisableStartedData{}, events.ProtectionDisabledData{})...)
	require.Empty(t, vm.RecoveryHost)
	require.Empty(t, vm.RecoveryPoints)
}
