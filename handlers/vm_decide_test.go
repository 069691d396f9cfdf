package handlers

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
)

// spec is the state table of docs/operations.md ("States") written out independently of events.vmTable:
// the operations each protection state allows (test sub-state None).
var spec = map[events.ProtectionState][]events.Operation{
	events.Unprotected:                 {events.OpEnable},
	events.EnablingProtection:          {events.OpDisable},
	events.EnablingFailed:              {events.OpEnable, events.OpDisable},
	events.InitialReplication:          {events.OpDisable},
	events.Protected:                   {events.OpDisable, events.OpPause, events.OpTestFailover, events.OpPlannedFailover, events.OpUnplannedFailover},
	events.Paused:                      {events.OpResume, events.OpUnplannedFailover, events.OpDisable},
	events.ResyncRequiredState:         {events.OpResync, events.OpUnplannedFailover, events.OpDisable},
	events.Resynchronizing:             nil,
	events.PlannedFailoverInProgress:   nil,
	events.PlannedFailoverFailed:       {events.OpPlannedFailover, events.OpCancelFailover},
	events.UnplannedFailoverInProgress: nil,
	events.UnplannedFailoverFailed:     {events.OpUnplannedFailover, events.OpCancelFailover},
	events.FailoverCommitPending:       {events.OpChangeRecoveryPoint, events.OpCommit, events.OpCancelFailover},
	events.FailoverCommittedState:      {events.OpReverse},
	events.ReverseReplicationState:     nil,
	events.DisablingProtection:         nil,
}

// outcome is what an allowed operation emits and where the VM goes.
type outcome struct {
	typ  events.Type
	next events.ProtectionState // "" when the protection state stays
	test events.TestFailoverState
}

var outcomes = map[events.Operation]outcome{
	events.OpEnable:              {events.ProtectionEnableStarted, events.EnablingProtection, ""},
	events.OpDisable:             {events.ProtectionDisableStarted, events.DisablingProtection, ""},
	events.OpPause:               {events.ReplicationPaused, events.Paused, ""},
	events.OpResume:              {events.ReplicationResumed, events.Protected, ""},
	events.OpResync:              {events.ResyncStarted, events.Resynchronizing, ""},
	events.OpTestFailover:        {events.TestFailoverStarted, "", events.TestInProgress},
	events.OpTestCleanup:         {events.TestCleanupStarted, "", events.TestCleaningUp},
	events.OpPlannedFailover:     {events.FailoverStarted, events.PlannedFailoverInProgress, ""},
	events.OpUnplannedFailover:   {events.FailoverStarted, events.UnplannedFailoverInProgress, ""},
	events.OpChangeRecoveryPoint: {events.RecoveryPointChanged, events.FailoverCommitPending, ""},
	events.OpCommit:              {events.FailoverCommitted, events.FailoverCommittedState, ""},
	events.OpCancelFailover:      {events.FailoverCancelled, events.Protected, ""},
	events.OpReverse:             {events.ReverseReplicationStarted, events.ReverseReplicationState, ""},
}

var t0 = time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)

var (
	evCreated  = events.VMCreatedData{Name: "web01", Host: "hv01", Site: "primary", Cloud: "gold", Disks: []events.DiskSpec{{Name: "disk0", Size: 1 << 20}}}
	evEnabled  = events.ProtectionEnableStartedData{Pairing: "gold-gold-dr", Policy: "p30", SourceHost: "hv01", SourceSite: "primary", RecoveryHost: "hv11", TargetSite: "secondary", TargetCloud: "gold-dr"}
	evProtect  = []events.Data{evCreated, evEnabled, events.InitialReplicationStartedData{}, events.InitialReplicationCompletedData{}, events.RecoveryPointCreatedData{ID: "rp1", Time: t0, Epoch: 1}}
	evPlanned  = events.FailoverStartedData{Mode: events.FailoverPlanned, ShutdownSource: true}
	evUnplan   = events.FailoverStartedData{Mode: events.FailoverUnplanned, RecoveryPoint: "rp1"}
	evComplete = events.FailoverCompletedData{Mode: events.FailoverPlanned, RecoveryPoint: "rp1", Epoch: 2, Host: "hv11", Site: "secondary"}
)

// histories lead a VM to each protection state.
var histories = map[events.ProtectionState][]events.Data{
	events.Unprotected:                 {evCreated},
	events.EnablingProtection:          {evCreated, evEnabled},
	events.EnablingFailed:              {evCreated, evEnabled, events.ProtectionEnableFailedData{Reason: "x"}},
	events.InitialReplication:          {evCreated, evEnabled, events.InitialReplicationStartedData{}},
	events.Protected:                   evProtect,
	events.Paused:                      append(slices.Clone(evProtect), events.ReplicationPausedData{}),
	events.ResyncRequiredState:         append(slices.Clone(evProtect), events.ResyncRequiredData{Reason: "log lost"}),
	events.Resynchronizing:             append(slices.Clone(evProtect), events.ResyncRequiredData{}, events.ResyncStartedData{}),
	events.PlannedFailoverInProgress:   append(slices.Clone(evProtect), evPlanned),
	events.PlannedFailoverFailed:       append(slices.Clone(evProtect), evPlanned, events.FailoverFailedData{Mode: events.FailoverPlanned}),
	events.UnplannedFailoverInProgress: append(slices.Clone(evProtect), evUnplan),
	events.UnplannedFailoverFailed:     append(slices.Clone(evProtect), evUnplan, events.FailoverFailedData{Mode: events.FailoverUnplanned}),
	events.FailoverCommitPending:       append(slices.Clone(evProtect), evPlanned, evComplete),
	events.FailoverCommittedState:      append(slices.Clone(evProtect), evPlanned, evComplete, events.FailoverCommittedData{Mode: events.FailoverPlanned}),
	events.ReverseReplicationState:     append(slices.Clone(evProtect), evPlanned, evComplete, events.FailoverCommittedData{}, events.ReverseReplicationStartedData{}),
	events.DisablingProtection:         append(slices.Clone(evProtect), events.ProtectionDisableStartedData{}),
}

func fold(evs ...events.Data) events.VM {
	var vm events.VM
	for i, d := range evs {
		vm.Apply(events.Record{Seq: uint64(i + 1), Aggregate: events.VMAgg("web01"), Data: d})
	}
	return vm
}

// goodEnable is an enable context with a pairing, policy and target host.
func goodEnable() enableContext {
	return enableContext{
		Cloud:       cloudState{Cloud: events.Cloud{Name: "gold", Site: "primary", Version: 1}, Pairing: "gold-gold-dr", Role: events.PairingRoleSource},
		Pairing:     events.Pairing{Name: "gold-gold-dr", SourceCloud: "gold", TargetCloud: "gold-dr", Policy: "p30", Version: 5},
		Policy:      events.Policy{Name: "p30", Settings: events.PolicySettings{CopyFrequency: events.Duration(30 * time.Second)}, Version: 4},
		TargetCloud: cloudState{Cloud: events.Cloud{Name: "gold-dr", Site: "secondary", Hosts: []string{"hv11"}, Version: 3}},
		TargetHosts: []hostState{{Host: events.Host{Name: "hv11", Site: "secondary", Version: 2}}},
	}
}

func TestDecideVMEveryStateAndOperation(t *testing.T) {
	require.Len(t, histories, len(events.VMStates), "a history for every state")
	for _, state := range events.VMStates {
		vm := fold(histories[state]...)
		require.Equal(t, state, vm.State)
		for _, op := range events.VMOperations {
			allowed := slices.Contains(spec[state], op)
			t.Run(fmt.Sprintf("%s/%s", state, op), func(t *testing.T) {
				checkDecision(t, vm, op, allowed)
			})
		}
	}
}

// TestDecideVMTestSubStates covers the test failover sub-states of a
// protected VM: one test at a time, cleanup only once completed.
func TestDecideVMTestSubStates(t *testing.T) {
	base := histories[events.Protected]
	subs := map[events.TestFailoverState][]events.Data{
		events.TestInProgress: {events.TestFailoverStartedData{RecoveryPoint: "rp1"}},
		events.TestCompleted:  {events.TestFailoverStartedData{}, events.TestFailoverCompletedData{}},
		events.TestCleaningUp: {events.TestFailoverStartedData{}, events.TestFailoverCompletedData{}, events.TestCleanupStartedData{}},
	}
	for sub, extra := range subs {
		vm := fold(append(slices.Clone(base), extra...)...)
		require.Equal(t, sub, vm.TestState)
		checkDecision(t, vm, events.OpTestFailover, false)
		checkDecision(t, vm, events.OpTestCleanup, sub == events.TestCompleted)
		checkDecision(t, vm, events.OpPlannedFailover, true)
	}
}

func checkDecision(t *testing.T, vm events.VM, op events.Operation, allowed bool) {
	t.Helper()
	r := vmRequest{VM: "web01"}
	evs, err := decideVM(vmOpState{VM: vm, Enable: goodEnable()}, op, r)
	if !allowed {
		require.ErrorIs(t, err, events.ErrInvalidState, "%s in %s", op, vm.State)
		var se *events.StateError
		require.True(t, errors.As(err, &se))
		require.Contains(t, err.Error(), string(vm.State))
		require.Contains(t, err.Error(), "allowed: ")
		for _, a := range vm.Allowed() {
			require.Contains(t, err.Error(), string(a))
		}
		require.Empty(t, evs)
		return
	}
	require.NoError(t, err, "%s in %s", op, vm.State)
	require.Len(t, evs, 1)
	want := outcomes[op]
	require.Equal(t, want.typ, evs[0].EventType())
	after := vm
	after.Apply(events.Record{Seq: vm.Version + 1, Data: evs[0]})
	if want.next != "" {
		require.Equal(t, want.next, after.State)
	}
	if want.test != "" {
		require.Equal(t, want.test, after.TestState)
	}
}

func TestDecideVMDetails(t *testing.T) {
	protected := fold(histories[events.Protected]...)

	evs, err := decideVM(vmOpState{VM: fold(evCreated), Enable: goodEnable()}, events.OpEnable, vmRequest{VM: "web01"})
	require.NoError(t, err)
	en := evs[0].(events.ProtectionEnableStartedData)
	require.Equal(t, "hv11", en.RecoveryHost)
	require.Equal(t, "secondary", en.TargetSite)
	require.Equal(t, "primary", en.SourceSite)
	require.Equal(t, "p30", en.Policy)
	require.Equal(t, 30*time.Second, en.Settings.CopyFrequency.D())

	evs, err = decideVM(vmOpState{VM: protected}, events.OpUnplannedFailover, vmRequest{VM: "web01", ShutdownSource: true})
	require.NoError(t, err)
	fo := evs[0].(events.FailoverStartedData)
	require.Equal(t, "rp1", fo.RecoveryPoint)
	require.True(t, fo.ShutdownSource)
	require.Equal(t, "hv11", fo.ToHost)

	_, err = decideVM(vmOpState{VM: protected}, events.OpTestFailover, vmRequest{VM: "web01", RecoveryPoint: "nope"})
	require.ErrorIs(t, err, events.ErrNotFound)

	noPoints := fold(evCreated, evEnabled, events.InitialReplicationStartedData{}, events.InitialReplicationCompletedData{})
	_, err = decideVM(vmOpState{VM: noPoints}, events.OpUnplannedFailover, vmRequest{VM: "web01"})
	require.ErrorIs(t, err, events.ErrInvalidState)

	evs, err = decideVM(vmOpState{VM: fold(histories[events.FailoverCommitPending]...)}, events.OpCancelFailover, vmRequest{VM: "web01"})
	require.NoError(t, err)
	require.Equal(t, uint64(3), evs[0].(events.FailoverCancelledData).Epoch)

	_, err = decideVM(vmOpState{}, events.OpEnable, vmRequest{VM: "ghost"})
	require.ErrorIs(t, err, events.ErrNotFound)
}

func TestDecideEnableNeedsPairing(t *testing.T) {
	vm := fold(evCreated)
	noPairing := goodEnable()
	noPairing.Cloud.Pairing, noPairing.Pairing = "", events.Pairing{}
	_, err := decideVM(vmOpState{VM: vm, Enable: noPairing}, events.OpEnable, vmRequest{VM: "web01"})
	require.ErrorIs(t, err, events.ErrInvalidState)
	require.Contains(t, err.Error(), "has no pairing")

	target := goodEnable()
	target.Pairing.SourceCloud, target.Pairing.TargetCloud = "other", "gold"
	_, err = decideVM(vmOpState{VM: vm, Enable: target}, events.OpEnable, vmRequest{VM: "web01"})
	require.ErrorIs(t, err, events.ErrInvalidState)
	require.Contains(t, err.Error(), "target of pairing")

	noHost := goodEnable()
	noHost.TargetHosts = nil
	_, err = decideVM(vmOpState{VM: vm, Enable: noHost}, events.OpEnable, vmRequest{VM: "web01"})
	require.ErrorIs(t, err, events.ErrInvalidState)

	reachable := goodEnable()
	reachable.TargetHosts = append(reachable.TargetHosts, hostState{Host: events.Host{Name: "hv12", Reachable: true, Version: 9}})
	evs, err := decideVM(vmOpState{VM: vm, Enable: reachable}, events.OpEnable, vmRequest{VM: "web01"})
	require.NoError(t, err)
	require.Equal(t, "hv12", evs[0].(events.ProtectionEnableStartedData).RecoveryHost)
}

// TestPickRecoveryHostByReachability: reachable first, then a host not
// heard from yet (unknown), then an unreachable one; the first of a kind.
func TestPickRecoveryHostByReachability(t *testing.T) {
	host := func(name string, r events.Reachability) hostState {
		return hostState{Host: events.Host{Name: name, Reachability: r, Reachable: r == events.ReachabilityReachable, Version: 2}}
	}
	gone := hostState{Host: events.Host{Name: "hv00", Reachability: events.ReachabilityReachable, Deleted: true, Version: 3}}
	down, unknown, up := events.ReachabilityUnreachable, events.ReachabilityUnknown, events.ReachabilityReachable
	for _, c := range []struct {
		hosts []hostState
		want  string
	}{
		{[]hostState{gone}, ""},
		{[]hostState{host("hv11", down), host("hv12", down)}, "hv11"},
		{[]hostState{host("hv11", down), host("hv12", unknown), host("hv13", unknown)}, "hv12"},
		{[]hostState{gone, host("hv11", unknown), host("hv12", down), host("hv13", up), host("hv14", up)}, "hv13"},
	} {
		got, ok := pickRecoveryHost(c.hosts)
		require.Equal(t, c.want, got)
		require.Equal(t, c.want != "", ok)
	}
}

func TestCheckVMRequestFields(t *testing.T) {
	require.ErrorIs(t, checkVMRequest(events.OpEnable, vmRequest{VM: "a", RecoveryPoint: "rp1"}), events.ErrInvalidArgument)
	require.ErrorIs(t, checkVMRequest(events.OpPlannedFailover, vmRequest{VM: "a", ShutdownSource: true}), events.ErrInvalidArgument)
	require.ErrorIs(t, checkVMRequest(events.OpChangeRecoveryPoint, vmRequest{VM: "a"}), events.ErrInvalidArgument)
	require.ErrorIs(t, checkVMRequest(events.OpTestFailover, vmRequest{VM: "a", Network: "bad net"}), events.ErrInvalidArgument)
	require.NoError(t, checkVMRequest(events.OpTestFailover, vmRequest{VM: "a", Network: "test-net", RecoveryPoint: "latest"}))
	require.NoError(t, checkVMRequest(events.OpUnplannedFailover, vmRequest{VM: "a", ShutdownSource: true, RecoveryPoint: "rp1"}))
}
