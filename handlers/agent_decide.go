package handlers

import (
	"fmt"
	"slices"
	"time"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/agentproto"
)

// The replication reports of host agents (agentproto.ReplicationVerbs),
// decided over the VM (or, for a heartbeat, the host) they name. A retried
// report with the same command_id appends nothing twice.

// pointStates are the states in which a recovery host's points count:
// replication runs in them (or has just stopped, for a planned failover's
// final cycle).
var pointStates = []events.ProtectionState{
	events.EnablingProtection, events.InitialReplication, events.Protected, events.Paused,
	events.ResyncRequiredState, events.Resynchronizing, events.PlannedFailoverInProgress,
	events.PlannedFailoverFailed, events.ReverseReplicationState,
}

// errorStates are the states in which a replication error is recorded.
var errorStates = append(slices.Clone(pointStates), events.DisablingProtection)

// DecideDiskProvisioned: a source image comes from the VM's source or
// active host, a replica from its recovery host; a report equal to what the
// VM already records appends nothing.
func DecideDiskProvisioned(vm events.VM, host string, r agentproto.DiskProvisionedReport) ([]events.Data, error) {
	if err := mustExist(&vm, r.VM); err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(vm.Disks, func(d events.DiskSpec) bool { return d.Name == r.Disk }) {
		return nil, invalidArg("vm %s has no disk %q", vm.Name, r.Disk)
	}
	if r.Image == "" {
		return nil, invalidArg("disk %s: image path is required", r.Disk)
	}
	switch r.Role {
	case events.DiskRoleSource:
		if host != vm.SourceHost && host != vm.ActiveHost {
			return nil, unauthorized(host, "source", &vm)
		}
	case events.DiskRoleReplica:
		if host != vm.RecoveryHost {
			return nil, unauthorized(host, "recovery", &vm)
		}
	default:
		return nil, invalidArg("disk role %q (want source or replica)", r.Role)
	}
	want := events.DiskImage{Host: host, Role: r.Role, Image: r.Image, NBDURL: r.NBDURL, Epoch: r.Epoch}
	if slices.Contains(vm.Images[r.Disk], want) {
		return nil, nil
	}
	return []events.Data{events.DiskProvisionedData{Host: host, Disk: r.Disk, Role: r.Role, Image: r.Image, NBDURL: r.NBDURL, Epoch: r.Epoch}}, nil
}

// DecideIRProgress: the source reports the initial copy's progress; the
// first report starts the initial replication. Reports after it completed
// append nothing (a late retry).
func DecideIRProgress(vm events.VM, host string, r agentproto.IRProgressReport) ([]events.Data, error) {
	if err := mustExist(&vm, r.VM); err != nil {
		return nil, err
	}
	if host != vm.SourceHost {
		return nil, unauthorized(host, "source", &vm)
	}
	if r.DoneBytes < 0 || r.TotalBytes < 0 || r.DoneBytes > r.TotalBytes {
		return nil, invalidArg("progress %d of %d bytes", r.DoneBytes, r.TotalBytes)
	}
	progress := events.InitialReplicationProgressData{DoneBytes: r.DoneBytes, TotalBytes: r.TotalBytes}
	switch vm.State {
	case events.EnablingProtection:
		return []events.Data{events.InitialReplicationStartedData{TotalBytes: r.TotalBytes}, progress}, nil
	case events.InitialReplication:
		return []events.Data{progress}, nil
	case events.Protected, events.Paused:
		return nil, nil
	}
	return nil, stateErr(&vm, agentproto.VerbIRProgress)
}

// DecideIRCompleted: the source reports the initial copy applied whole:
// InitialReplication → Protected (EnablingProtection passes through
// InitialReplication). A repeat after that appends nothing.
func DecideIRCompleted(vm events.VM, host string, r agentproto.IRCompletedReport) ([]events.Data, error) {
	if err := mustExist(&vm, r.VM); err != nil {
		return nil, err
	}
	if host != vm.SourceHost {
		return nil, unauthorized(host, "source", &vm)
	}
	if r.SentBytes < 0 {
		return nil, invalidArg("sent bytes %d", r.SentBytes)
	}
	done := events.InitialReplicationCompletedData{SentBytes: r.SentBytes}
	switch vm.State {
	case events.EnablingProtection:
		return []events.Data{events.InitialReplicationStartedData{TotalBytes: r.SentBytes}, done}, nil
	case events.InitialReplication:
		return []events.Data{done}, nil
	case events.Protected, events.Paused:
		return nil, nil
	}
	return nil, stateErr(&vm, agentproto.VerbIRCompleted)
}

// DecideRecoveryPoint: only the VM's recovery host reports points, only for
// the VM's current epoch, only while replication runs; a point id already
// recorded appends nothing. A point clears a Critical health caused by
// errors (not one caused by a required resync).
func DecideRecoveryPoint(vm events.VM, host string, r agentproto.RecoveryPointReport) ([]events.Data, error) {
	if err := mustExist(&vm, r.VM); err != nil {
		return nil, err
	}
	if host != vm.RecoveryHost {
		return nil, unauthorized(host, "recovery", &vm)
	}
	if err := events.ValidateToken("id", r.ID); err != nil {
		return nil, fmt.Errorf("recovery point: %w", err)
	}
	if r.Time.IsZero() || r.Cycle == 0 || r.Bytes < 0 {
		return nil, invalidArg("recovery point %s: time, cycle and bytes are required", r.ID)
	}
	if r.Epoch != vm.Epoch {
		return nil, invalidArg("recovery point %s of epoch %d: vm %s is at epoch %d", r.ID, r.Epoch, vm.Name, vm.Epoch)
	}
	if _, ok := vm.RecoveryPoint(r.ID); ok {
		return nil, nil
	}
	if !slices.Contains(pointStates, vm.State) {
		return nil, stateErr(&vm, agentproto.VerbRecoveryPoint)
	}
	evs := []events.Data{events.RecoveryPointCreatedData{
		ID: r.ID, Time: r.Time.UTC(), AppConsistent: r.AppConsistent, Cycle: r.Cycle,
		Epoch: r.Epoch, Roots: r.Roots, RootsHash: r.RootsHash, Bytes: r.Bytes,
	}}
	if vm.Health == events.HealthCritical && vm.State != events.ResyncRequiredState {
		evs = append(evs, events.HealthChangedData{Health: events.HealthNormal})
	}
	return evs, nil
}

// DecidePointsPruned: the recovery host dropped points; ids the VM does not
// hold are ignored, and nothing is appended when none is left.
func DecidePointsPruned(vm events.VM, host string, r agentproto.PointsPrunedReport) ([]events.Data, error) {
	if err := mustExist(&vm, r.VM); err != nil {
		return nil, err
	}
	if host != vm.RecoveryHost {
		return nil, unauthorized(host, "recovery", &vm)
	}
	var ids []string
	for _, id := range r.IDs {
		if _, ok := vm.RecoveryPoint(id); ok && id != "" && id != "latest" && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	return []events.Data{events.RecoveryPointsPrunedData{IDs: ids}}, nil
}

// DecideError: a host taking part in the VM's replication reports an error.
// resync_required moves a replicating VM to ResyncRequired (once); any other
// code is recorded as a replication_error. Both make the health Critical.
func DecideError(vm events.VM, host string, r agentproto.ErrorReport) ([]events.Data, error) {
	if err := mustExist(&vm, r.VM); err != nil {
		return nil, err
	}
	if host != vm.SourceHost && host != vm.RecoveryHost && host != vm.ActiveHost {
		return nil, unauthorized(host, "source, recovery or active", &vm)
	}
	if err := events.ValidateToken("code", r.Code); err != nil {
		return nil, fmt.Errorf("error report: %w", err)
	}
	var evs []events.Data
	switch {
	case r.Code == agentproto.CodeResyncRequired && vm.State == events.ResyncRequiredState:
		return nil, nil
	case r.Code == agentproto.CodeResyncRequired && slices.Contains(pointStates, vm.State):
		evs = append(evs, events.ResyncRequiredData{Reason: r.Message})
	case slices.Contains(errorStates, vm.State):
		evs = append(evs, events.ReplicationErrorData{Host: host, Code: r.Code, Message: r.Message})
	default:
		return nil, stateErr(&vm, agentproto.VerbError)
	}
	if vm.Health != events.HealthCritical {
		evs = append(evs, events.HealthChangedData{Health: events.HealthCritical, Issues: []string{r.Code + ": " + r.Message}})
	}
	return evs, nil
}

// DecideDisabled: the agent holding the VM's replica (or the source, when
// there is no recovery host) finished disabling.
func DecideDisabled(vm events.VM, host string, r agentproto.DisabledReport) ([]events.Data, error) {
	if err := mustExist(&vm, r.VM); err != nil {
		return nil, err
	}
	owner := vm.RecoveryHost
	if owner == "" {
		owner = vm.SourceHost
	}
	if host != owner {
		return nil, unauthorized(host, "recovery", &vm)
	}
	switch vm.State {
	case events.DisablingProtection:
		return []events.Data{events.ProtectionDisabledData{ReplicaDeleted: r.ReplicaDeleted}}, nil
	case events.Unprotected:
		return nil, nil
	}
	return nil, stateErr(&vm, agentproto.VerbDisabled)
}

// DecideHeartbeat: a registered host heard from while not reachable
// (unknown or unreachable) becomes reachable.
func DecideHeartbeat(h events.Host, host string, r agentproto.HeartbeatReport, now time.Time) ([]events.Data, error) {
	if !h.Exists() {
		return nil, fmt.Errorf("host %s is not registered: %w", host, events.ErrNotFound)
	}
	if h.Reach() == events.ReachabilityReachable {
		return nil, nil
	}
	return []events.Data{events.HostReachableData{Name: host, Agent: r.Agent, Since: now.UTC()}}, nil
}

// HostWatch is what one control plane knows of a host's heartbeats.
type HostWatch struct {
	// Heard is the last heartbeat it received from the host (zero: none
	// since it started). It may predate the host's registration.
	Heard time.Time
	// Watching is when it started receiving heartbeats.
	Watching time.Time
}

// DecideSweep moves a registered host's reachability with what the sweeping
// control plane knows at now:
//   - heard within threshold and not reachable (a heartbeat that came
//     before the host was registered, or whose event was not appended):
//     reachable since that heartbeat;
//   - silent for longer than threshold and not unreachable: unreachable.
//     Silence is measured from the latest of the last heartbeat heard, the
//     start of the watch and the registration, so a host stays unknown
//     until the threshold has passed since the control plane (re)started
//     or the host registered.
func DecideSweep(h events.Host, w HostWatch, now time.Time, threshold time.Duration) []events.Data {
	if !h.Exists() {
		return nil
	}
	reach := h.Reach()
	if !w.Heard.IsZero() && now.Sub(w.Heard) <= threshold {
		if reach == events.ReachabilityReachable {
			return nil
		}
		return []events.Data{events.HostReachableData{Name: h.Name, Since: w.Heard.UTC()}}
	}
	silentSince := latest(w.Heard, w.Watching, h.Registered)
	if reach == events.ReachabilityUnreachable || now.Sub(silentSince) <= threshold {
		return nil
	}
	return []events.Data{events.HostUnreachableData{Name: h.Name, LastSeen: latest(w.Heard, h.LastSeen).UTC()}}
}

// latest is the latest of ts (the zero time for none).
func latest(ts ...time.Time) time.Time {
	var out time.Time
	for _, t := range ts {
		if t.After(out) {
			out = t
		}
	}
	return out
}
