package handlers

import (
	"fmt"

	"github.com/siterecovery/siterecovery/events"
)

// vmCreateState is the VM to create, the host it is created on and the
// host's cloud.
type vmCreateState struct {
	VM    events.VM
	Host  hostState
	Cloud cloudState
}

// vmCreate is a validated vm create request.
type vmCreate struct {
	Name     string
	Host     string
	Disks    []events.DiskSpec
	Networks []string
}

func decideVMCreate(st vmCreateState, c vmCreate) ([]events.Data, error) {
	if st.VM.Exists() {
		return nil, alreadyExists(events.KindVM, c.Name)
	}
	if !st.Host.Exists() {
		return nil, notFound(events.KindHost, c.Host)
	}
	if st.Host.Cloud == "" || !st.Cloud.Exists() {
		return nil, fmt.Errorf("vm %s: host %s is in no cloud: add it to a cloud first: %w", c.Name, c.Host, events.ErrInvalidArgument)
	}
	return []events.Data{events.VMCreatedData{
		Name: c.Name, Host: c.Host, Site: st.Host.Site, Cloud: st.Cloud.Name, Disks: c.Disks, Networks: c.Networks,
	}}, nil
}

// enableContext is what enable reads besides the VM: the VM's cloud, its
// pairing and policy, and the target cloud's hosts in cloud order.
type enableContext struct {
	Cloud       cloudState
	Pairing     events.Pairing
	Policy      events.Policy
	TargetCloud cloudState
	TargetHosts []hostState
}

// vmOpState is a VM and, for enable, its enableContext.
type vmOpState struct {
	VM     events.VM
	Enable enableContext
}

// opFields says which optional request fields an operation takes.
var opFields = map[events.Operation]struct{ point, shutdown, network bool }{
	events.OpTestFailover:        {point: true, network: true},
	events.OpUnplannedFailover:   {point: true, shutdown: true},
	events.OpChangeRecoveryPoint: {point: true},
}

// checkVMRequest refuses fields the operation does not take.
func checkVMRequest(op events.Operation, r vmRequest) error {
	f := opFields[op]
	switch {
	case r.RecoveryPoint != "" && !f.point:
		return fmt.Errorf("vm %s: takes no recovery_point: %w", op, events.ErrInvalidArgument)
	case r.ShutdownSource && !f.shutdown:
		return fmt.Errorf("vm %s: takes no shutdown_source: %w", op, events.ErrInvalidArgument)
	case r.Network != "" && !f.network:
		return fmt.Errorf("vm %s: takes no network: %w", op, events.ErrInvalidArgument)
	case op == events.OpChangeRecoveryPoint && r.RecoveryPoint == "":
		return fmt.Errorf("vm change_recovery_point: recovery_point is required: %w", events.ErrInvalidArgument)
	}
	if r.RecoveryPoint != "" && r.RecoveryPoint != "latest" {
		return token("recovery_point", r.RecoveryPoint)
	}
	return optionalToken("network", r.Network)
}

// decideVM decides a VM operation with the state machine of events.
func decideVM(st vmOpState, op events.Operation, r vmRequest) ([]events.Data, error) {
	vm := st.VM
	if !vm.Exists() {
		return nil, notFound(events.KindVM, r.VM)
	}
	if err := vm.Check(op); err != nil {
		return nil, err
	}
	switch op {
	case events.OpEnable:
		return decideEnable(vm, st.Enable)
	case events.OpDisable:
		return one(events.ProtectionDisableStartedData{DeleteReplica: vm.Settings.DeleteReplicaOnDisable})
	case events.OpPause:
		return one(events.ReplicationPausedData{})
	case events.OpResume:
		return one(events.ReplicationResumedData{})
	case events.OpResync:
		return one(events.ResyncStartedData{TotalBytes: totalBytes(vm.Disks)})
	case events.OpTestCleanup:
		return one(events.TestCleanupStartedData{})
	case events.OpCommit:
		return one(events.FailoverCommittedData{Mode: vm.FailoverMode})
	case events.OpCancelFailover:
		return one(events.FailoverCancelledData{Epoch: vm.Epoch + 1})
	case events.OpReverse:
		return one(events.ReverseReplicationStartedData{
			SourceHost: vm.ActiveHost, SourceSite: vm.ActiveSite,
			RecoveryHost: vm.SourceHost, TargetSite: vm.SourceSite,
			Resync: vm.FailoverMode != events.FailoverPlanned,
		})
	}
	return decideFailover(vm, op, r)
}

func decideFailover(vm events.VM, op events.Operation, r vmRequest) ([]events.Data, error) {
	if op == events.OpPlannedFailover {
		return one(events.FailoverStartedData{
			Mode: events.FailoverPlanned, ShutdownSource: true,
			FromHost: vm.SourceHost, FromSite: vm.SourceSite, ToHost: vm.RecoveryHost, ToSite: vm.TargetSite,
		})
	}
	rp, err := recoveryPoint(vm, r.RecoveryPoint)
	if err != nil {
		return nil, err
	}
	switch op {
	case events.OpTestFailover:
		return one(events.TestFailoverStartedData{RecoveryPoint: rp, Network: r.Network, Host: vm.RecoveryHost})
	case events.OpUnplannedFailover:
		return one(events.FailoverStartedData{
			Mode: events.FailoverUnplanned, RecoveryPoint: rp, ShutdownSource: r.ShutdownSource,
			FromHost: vm.SourceHost, FromSite: vm.SourceSite, ToHost: vm.RecoveryHost, ToSite: vm.TargetSite,
		})
	case events.OpChangeRecoveryPoint:
		return one(events.RecoveryPointChangedData{RecoveryPoint: rp})
	}
	return nil, fmt.Errorf("vm operation %q: %w", op, events.ErrInvalidArgument)
}

// recoveryPoint resolves id ("" or "latest" for the latest) to a retained
// recovery point of vm.
func recoveryPoint(vm events.VM, id string) (string, error) {
	rp, ok := vm.RecoveryPoint(id)
	switch {
	case ok:
		return rp.ID, nil
	case id == "" || id == "latest":
		return "", fmt.Errorf("vm %s has no recovery point yet: %w", vm.Name, events.ErrInvalidState)
	}
	return "", fmt.Errorf("vm %s: recovery point %s: %w", vm.Name, id, events.ErrNotFound)
}

// decideEnable fixes the replication direction and settings: from the VM's
// host to the first registered host of the target cloud of its cloud's
// pairing, preferring a reachable one, then one not heard from yet.
func decideEnable(vm events.VM, e enableContext) ([]events.Data, error) {
	if e.Cloud.Pairing == "" || !e.Pairing.Exists() {
		return nil, fmt.Errorf("vm %s cannot be enabled: its cloud %s has no pairing; pair the cloud with a cloud of the other site first: %w",
			vm.Name, vm.Cloud, events.ErrInvalidState)
	}
	if e.Pairing.SourceCloud != vm.Cloud {
		return nil, fmt.Errorf("vm %s cannot be enabled: its cloud %s is the target of pairing %s; VMs are protected from the source cloud %s: %w",
			vm.Name, vm.Cloud, e.Pairing.Name, e.Pairing.SourceCloud, events.ErrInvalidState)
	}
	if !e.Policy.Exists() {
		return nil, notFound(events.KindPolicy, e.Pairing.Policy)
	}
	host, ok := pickRecoveryHost(e.TargetHosts)
	if !ok {
		return nil, fmt.Errorf("vm %s cannot be enabled: target cloud %s has no registered host: %w",
			vm.Name, e.Pairing.TargetCloud, events.ErrInvalidState)
	}
	return one(events.ProtectionEnableStartedData{
		Pairing: e.Pairing.Name, Policy: e.Policy.Name, Settings: e.Policy.Settings,
		SourceHost: vm.ActiveHost, SourceSite: vm.ActiveSite,
		RecoveryHost: host, TargetSite: e.TargetCloud.Site, TargetCloud: e.TargetCloud.Name,
	})
}

// pickRecoveryHost returns the first reachable registered host, else the
// first whose reachability is unknown (a host just registered: its agent
// may not have heartbeated yet), else the first registered one.
func pickRecoveryHost(hosts []hostState) (string, bool) {
	best, rank := "", 0
	for _, h := range hosts {
		if !h.Exists() {
			continue
		}
		if r := reachRank(h.Reach()); r > rank {
			best, rank = h.Name, r
		}
	}
	return best, best != ""
}

// reachRank orders reachabilities for picking a host: reachable first.
func reachRank(r events.Reachability) int {
	switch r {
	case events.ReachabilityReachable:
		return 3
	case events.ReachabilityUnknown:
		return 2
	}
	return 1
}

func totalBytes(disks []events.DiskSpec) int64 {
	var n int64
	for _, d := range disks {
		n += d.Size
	}
	return n
}

func one(d events.Data) ([]events.Data, error) { return []events.Data{d}, nil }
