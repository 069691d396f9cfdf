package handlers

import (
	"fmt"
	"slices"
	"time"

	"github.com/siterecovery/siterecovery/events"
)

// What host agents report, as sr.cmd.agent.<host>.<verb> requests (JSON).
// The reporting host is the subject's <host> token, never a body field: a
// host's NATS user may publish only under its own sr.cmd.agent.<host>.>.
// Every report may carry a command_id; a retried report with the same id
// appends nothing twice.

// The agent verbs this file decides.
const (
	AgentHeartbeat       = "heartbeat"
	AgentDiskProvisioned = "disk_provisioned"
	AgentIRProgress      = "ir_progress"
	AgentIRCompleted     = "ir_completed"
	AgentRecoveryPoint   = "recovery_point"
	AgentPointsPruned    = "points_pruned"
	AgentError           = "error"
	AgentDisabled        = "protection_disabled"
)

// ErrorCodeResyncRequired in an error report means the change log of the
// VM's disks was lost or overflowed: the VM needs a resync.
const ErrorCodeResyncRequired = "resync_required"

// HeartbeatReport is the body of sr.cmd.agent.<host>.heartbeat.
type HeartbeatReport struct {
	Agent string    `json:"agent,omitempty"`
	Time  time.Time `json:"time"`
}

// DiskProvisionedReport: the agent created or found a disk image of a VM.
type DiskProvisionedReport struct {
	CommandID string `json:"command_id,omitempty"`
	VM        string `json:"vm"`
	Disk      string `json:"disk"`
	Role      string `json:"role"`
	Image     string `json:"image"`
	NBDURL    string `json:"nbd_url,omitempty"`
	Epoch     uint64 `json:"epoch"`
}

// IRProgressReport: bytes of the initial copy the recovery host holds.
type IRProgressReport struct {
	CommandID  string `json:"command_id,omitempty"`
	VM         string `json:"vm"`
	DoneBytes  int64  `json:"done_bytes"`
	TotalBytes int64  `json:"total_bytes"`
}

// IRCompletedReport: the initial copy was applied whole.
type IRCompletedReport struct {
	CommandID string `json:"command_id,omitempty"`
	VM        string `json:"vm"`
	SentBytes int64  `json:"sent_bytes"`
}

// RecoveryPointReport: the recovery host applied a whole cycle.
type RecoveryPointReport struct {
	CommandID     string            `json:"command_id,omitempty"`
	VM            string            `json:"vm"`
	ID            string            `json:"id"`
	Time          time.Time         `json:"time"`
	AppConsistent bool              `json:"app_consistent"`
	Cycle         uint64            `json:"cycle"`
	Epoch         uint64            `json:"epoch"`
	Roots         map[string]string `json:"roots,omitempty"`
	Bytes         int64             `json:"bytes"`
}

// PointsPrunedReport: the recovery host dropped points per the retention.
type PointsPrunedReport struct {
	CommandID string   `json:"command_id,omitempty"`
	VM        string   `json:"vm"`
	IDs       []string `json:"ids"`
}

// ErrorReport: something went wrong replicating a VM.
type ErrorReport struct {
	CommandID string `json:"command_id,omitempty"`
	VM        string `json:"vm"`
	Code      string `json:"code"`
	Message   string `json:"message"`
}

// DisabledReport: the agent stopped replicating the VM (after
// protection_disable_started) and deleted the replica or kept it.
type DisabledReport struct {
	CommandID      string `json:"command_id,omitempty"`
	VM             string `json:"vm"`
	ReplicaDeleted bool   `json:"replica_deleted"`
}

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

func invalidArg(format string, a ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, a...), events.ErrInvalidArgument)
}

func unauthorized(host, role string, vm *events.VM) error {
	return fmt.Errorf("host %s is not the %s host of vm %s: %w", host, role, vm.Name, ErrUnauthorized)
}

func mustExist(vm *events.VM, name string) error {
	if !vm.Exists() {
		return fmt.Errorf("vm %s: %w", name, events.ErrNotFound)
	}
	return nil
}

func stateErr(vm *events.VM, what string) error {
	return &events.StateError{Aggregate: events.VMAgg(vm.Name), State: string(vm.State), Operation: what, Allowed: allowedNames(vm)}
}

func allowedNames(vm *events.VM) []string {
	var out []string
	for _, op := range vm.Allowed() {
		out = append(out, string(op))
	}
	return out
}

// DecideDiskProvisioned: a source image comes from the VM's source or
// active host, a replica from its recovery host; a report equal to what the
// VM already records appends nothing.
func DecideDiskProvisioned(vm events.VM, host string, r DiskProvisionedReport) ([]events.Data, error) {
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
func DecideIRProgress(vm events.VM, host string, r IRProgressReport) ([]events.Data, error) {
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
	return nil, stateErr(&vm, AgentIRProgress)
}

// DecideIRCompleted: the source reports the initial copy applied whole:
// InitialReplication → Protected (EnablingProtection passes through
// InitialReplication). A repeat after that appends nothing.
func DecideIRCompleted(vm events.VM, host string, r IRCompletedReport) ([]events.Data, error) {
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
	return nil, stateErr(&vm, AgentIRCompleted)
}

// DecideRecoveryPoint: only the VM's recovery host reports points, only for
// the VM's current epoch, only while replication runs; a point id already
// recorded appends nothing. A point clears a Critical health caused by
// errors (not one caused by a required resync).
func DecideRecoveryPoint(vm events.VM, host string, r RecoveryPointReport) ([]events.Data, error) {
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
		return nil, stateErr(&vm, AgentRecoveryPoint)
	}
	evs := []events.Data{events.RecoveryPointCreatedData{
		ID: r.ID, Time: r.Time.UTC(), AppConsistent: r.AppConsistent, Cycle: r.Cycle,
		Epoch: r.Epoch, Roots: r.Roots, Bytes: r.Bytes,
	}}
	if vm.Health == events.HealthCritical && vm.State != events.ResyncRequiredState {
		evs = append(evs, events.HealthChangedData{Health: events.HealthNormal})
	}
	return evs, nil
}

// DecidePointsPruned: the recovery host dropped points; ids the VM does not
// hold are ignored, and nothing is appended when none is left.
func DecidePointsPruned(vm events.VM, host string, r PointsPrunedReport) ([]events.Data, error) {
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
func DecideError(vm events.VM, host string, r ErrorReport) ([]events.Data, error) {
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
	case r.Code == ErrorCodeResyncRequired && vm.State == events.ResyncRequiredState:
		return nil, nil
	case r.Code == ErrorCodeResyncRequired && slices.Contains(pointStates, vm.State):
		evs = append(evs, events.ResyncRequiredData{Reason: r.Message})
	case slices.Contains(errorStates, vm.State):
		evs = append(evs, events.ReplicationErrorData{Host: host, Code: r.Code, Message: r.Message})
	default:
		return nil, stateErr(&vm, AgentError)
	}
	if vm.Health != events.HealthCritical {
		evs = append(evs, events.HealthChangedData{Health: events.HealthCritical, Issues: []string{r.Code + ": " + r.Message}})
	}
	return evs, nil
}

// DecideDisabled: the agent holding the VM's replica (or the source, when
// there is no recovery host) finished disabling.
func DecideDisabled(vm events.VM, host string, r DisabledReport) ([]events.Data, error) {
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
	return nil, stateErr(&vm, AgentDisabled)
}

// DecideHeartbeat: a registered host heard from while not reachable
// (unknown or unreachable) becomes reachable.
func DecideHeartbeat(h events.Host, host string, r HeartbeatReport, now time.Time) ([]events.Data, error) {
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
