package events

import (
	"slices"
	"time"
)

// ProtectionState is a VM's protection state, named as ASR names it.
type ProtectionState string

// The protection states (docs/operations.md, docs/reference/commands.md),
// EnablingFailed and UnplannedFailoverFailed among them: the failure states
// the table implies.
const (
	Unprotected                 ProtectionState = "Unprotected"
	EnablingProtection          ProtectionState = "EnablingProtection"
	EnablingFailed              ProtectionState = "EnablingFailed"
	InitialReplication          ProtectionState = "InitialReplication"
	Protected                   ProtectionState = "Protected"
	Paused                      ProtectionState = "Paused"
	ResyncRequiredState         ProtectionState = "ResyncRequired"
	Resynchronizing             ProtectionState = "Resynchronizing"
	PlannedFailoverInProgress   ProtectionState = "PlannedFailoverInProgress"
	PlannedFailoverFailed       ProtectionState = "PlannedFailoverFailed"
	UnplannedFailoverInProgress ProtectionState = "UnplannedFailoverInProgress"
	UnplannedFailoverFailed     ProtectionState = "UnplannedFailoverFailed"
	FailoverCommitPending       ProtectionState = "FailoverCommitPending"
	FailoverCommittedState      ProtectionState = "FailoverCommitted"
	ReverseReplicationState     ProtectionState = "ReverseReplication"
	DisablingProtection         ProtectionState = "DisablingProtection"
)

// TestFailoverState is the test failover sub-state; one test per VM.
type TestFailoverState string

// The test failover sub-states.
const (
	TestNone       TestFailoverState = "None"
	TestInProgress TestFailoverState = "InProgress"
	TestCompleted  TestFailoverState = "Completed"
	TestCleaningUp TestFailoverState = "CleaningUp"
)

// Operation is an operator's VM verb (the command sr.cmd.vm.<operation>).
type Operation string

// The VM operations, sr.cmd.vm.<operation> (docs/reference/commands.md; create
// aside: it makes the VM).
const (
	OpEnable              Operation = "enable"
	OpDisable             Operation = "disable"
	OpPause               Operation = "pause"
	OpResume              Operation = "resume"
	OpResync              Operation = "resync"
	OpTestFailover        Operation = "test_failover"
	OpTestCleanup         Operation = "test_cleanup"
	OpPlannedFailover     Operation = "planned_failover"
	OpUnplannedFailover   Operation = "unplanned_failover"
	OpChangeRecoveryPoint Operation = "change_recovery_point"
	OpCommit              Operation = "commit"
	OpCancelFailover      Operation = "cancel_failover"
	OpReverse             Operation = "reverse"
)

// VMOperations lists every VM operation in a stable order.
var VMOperations = []Operation{
	OpEnable, OpDisable, OpPause, OpResume, OpResync, OpTestFailover, OpTestCleanup,
	OpPlannedFailover, OpUnplannedFailover, OpChangeRecoveryPoint, OpCommit, OpCancelFailover, OpReverse,
}

// VMStates lists every protection state in a stable order.
var VMStates = []ProtectionState{
	Unprotected, EnablingProtection, EnablingFailed, InitialReplication, Protected, Paused,
	ResyncRequiredState, Resynchronizing, PlannedFailoverInProgress, PlannedFailoverFailed,
	UnplannedFailoverInProgress, UnplannedFailoverFailed, FailoverCommitPending,
	FailoverCommittedState, ReverseReplicationState, DisablingProtection,
}

// vmTable is the VM state machine (docs/reference/commands.md, VM
// operations): the operations an operator may start in each protection
// state. The test failover operations also depend on the test sub-state
// (see VM.Allowed). Never written.
var vmTable = map[ProtectionState][]Operation{
	Unprotected:        {OpEnable},
	EnablingProtection: {OpDisable},
	EnablingFailed:     {OpEnable, OpDisable},
	InitialReplication: {OpDisable},
	Protected:          {OpTestFailover, OpPlannedFailover, OpUnplannedFailover, OpPause, OpDisable},
	// Paused and ResyncRequired also allow an unplanned failover: in a
	// disaster the replica's retained points are still good, and waiting
	// for a resume or a resync that needs the lost site is no option.
	Paused:                      {OpResume, OpUnplannedFailover, OpDisable},
	ResyncRequiredState:         {OpResync, OpUnplannedFailover, OpDisable},
	Resynchronizing:             {},
	PlannedFailoverInProgress:   {},
	PlannedFailoverFailed:       {OpPlannedFailover, OpCancelFailover},
	UnplannedFailoverInProgress: {},
	UnplannedFailoverFailed:     {OpUnplannedFailover, OpCancelFailover},
	FailoverCommitPending:       {OpChangeRecoveryPoint, OpCommit, OpCancelFailover},
	FailoverCommittedState:      {OpReverse},
	ReverseReplicationState:     {},
	DisablingProtection:         {},
}

// StateOperations returns the operations the table allows in s, ignoring the
// test sub-state.
func StateOperations(s ProtectionState) []Operation { return slices.Clone(vmTable[s]) }

// RecoveryPoint is a point the replica can be restored to.
type RecoveryPoint struct {
	ID            string            `json:"id"`
	Time          time.Time         `json:"time"`
	AppConsistent bool              `json:"app_consistent"`
	Cycle         uint64            `json:"cycle"`
	Epoch         uint64            `json:"epoch"`
	Roots         map[string]string `json:"roots,omitempty"`
}

// DiskImage is where a disk lives on one host in one role.
type DiskImage struct {
	Host   string `json:"host"`
	Role   string `json:"role"`
	Image  string `json:"image"`
	NBDURL string `json:"nbd_url,omitempty"`
	Epoch  uint64 `json:"epoch"`
}

// VM is the state of a VM aggregate, folded from its events.
type VM struct {
	Name     string
	Cloud    string
	Disks    []DiskSpec
	Networks []string

	State     ProtectionState
	TestState TestFailoverState
	// Epoch rises with every failover and cancel; agents serve the VM only
	// at the current epoch.
	Epoch uint64

	// ActiveHost and ActiveSite run the VM now.
	ActiveHost string
	ActiveSite string
	// SourceHost/Site replicate to RecoveryHost/TargetSite while protected.
	SourceHost   string
	SourceSite   string
	RecoveryHost string
	TargetSite   string
	TargetCloud  string
	Pairing      string
	Policy       string
	Settings     PolicySettings

	RecoveryPoints []RecoveryPoint
	FailoverMode   string
	FailoverPoint  string
	Health         string
	Images         map[string][]DiskImage // by disk name

	// Version is the log sequence of the VM's last event (0: no events).
	Version uint64
}

// Exists reports whether the VM was created.
func (vm *VM) Exists() bool { return vm.Version > 0 && vm.Name != "" }

// Allowed returns the operations allowed now, in VMOperations order.
func (vm *VM) Allowed() []Operation {
	if !vm.Exists() {
		return nil
	}
	var ops []Operation
	for _, op := range VMOperations {
		if vm.allows(op) {
			ops = append(ops, op)
		}
	}
	return ops
}

func (vm *VM) allows(op Operation) bool {
	switch op {
	case OpTestFailover:
		return vm.TestState == TestNone && slices.Contains(vmTable[vm.State], op)
	case OpTestCleanup:
		return vm.TestState == TestCompleted
	}
	return slices.Contains(vmTable[vm.State], op)
}

// Check returns a *StateError when op is not allowed now.
func (vm *VM) Check(op Operation) error {
	if vm.allows(op) {
		return nil
	}
	allowed := vm.Allowed()
	names := make([]string, len(allowed))
	for i, a := range allowed {
		names[i] = string(a)
	}
	state := string(vm.State)
	if vm.TestState != TestNone && vm.TestState != "" {
		state += " (test failover " + string(vm.TestState) + ")"
	}
	return &StateError{Aggregate: VMAgg(vm.Name), State: state, Operation: string(op), Allowed: names}
}

// RecoveryPoint returns the point with id, or the latest for "latest" or "".
func (vm *VM) RecoveryPoint(id string) (RecoveryPoint, bool) {
	if len(vm.RecoveryPoints) == 0 {
		return RecoveryPoint{}, false
	}
	if id == "" || id == "latest" {
		return vm.RecoveryPoints[len(vm.RecoveryPoints)-1], true
	}
	for _, rp := range vm.RecoveryPoints {
		if rp.ID == id {
			return rp, true
		}
	}
	return RecoveryPoint{}, false
}

// FoldVM folds records into a VM.
func FoldVM(recs []Record) VM {
	var vm VM
	for _, r := range recs {
		vm.Apply(r)
	}
	return vm
}

// Apply folds one event into the VM. Unknown or foreign events are ignored.
func (vm *VM) Apply(r Record) {
	vm.Version = r.Seq
	switch d := r.Data.(type) {
	case VMCreatedData:
		*vm = VM{
			Name: d.Name, Cloud: d.Cloud, Disks: d.Disks, Networks: d.Networks,
			State: Unprotected, TestState: TestNone, Epoch: 1,
			ActiveHost: d.Host, ActiveSite: d.Site, SourceHost: d.Host, SourceSite: d.Site,
			Health: HealthNormal, Version: r.Seq,
		}
	case DiskProvisionedData:
		vm.provision(d)
	case ProtectionEnableStartedData:
		vm.State = EnablingProtection
		vm.Pairing, vm.Policy, vm.Settings = d.Pairing, d.Policy, d.Settings
		vm.SourceHost, vm.SourceSite = d.SourceHost, d.SourceSite
		vm.RecoveryHost, vm.TargetSite, vm.TargetCloud = d.RecoveryHost, d.TargetSite, d.TargetCloud
	default:
		vm.applyReplication(r)
	}
}

func (vm *VM) provision(d DiskProvisionedData) {
	if vm.Images == nil {
		vm.Images = map[string][]DiskImage{}
	}
	imgs := vm.Images[d.Disk]
	for i, im := range imgs {
		if im.Host == d.Host && im.Role == d.Role {
			imgs = slices.Delete(imgs, i, i+1)
			break
		}
	}
	vm.Images[d.Disk] = append(imgs, DiskImage{Host: d.Host, Role: d.Role, Image: d.Image, NBDURL: d.NBDURL, Epoch: d.Epoch})
}

func (vm *VM) applyReplication(r Record) {
	switch d := r.Data.(type) {
	case ProtectionEnableFailedData:
		vm.State = EnablingFailed
	case InitialReplicationStartedData:
		vm.State = InitialReplication
	case InitialReplicationCompletedData:
		vm.State = Protected
	case ProtectionDisableStartedData:
		vm.State = DisablingProtection
	case ProtectionDisabledData:
		vm.State = Unprotected
		vm.RecoveryPoints, vm.RecoveryHost, vm.TargetSite, vm.TargetCloud = nil, "", "", ""
		vm.Pairing, vm.Policy, vm.Health = "", "", HealthNormal
	case ReplicationPausedData:
		vm.State = Paused
	case ReplicationResumedData:
		vm.State = Protected
	case ResyncRequiredData:
		vm.State = ResyncRequiredState
	case ResyncStartedData:
		vm.State = Resynchronizing
	case ResyncCompletedData:
		vm.State = Protected
	case RecoveryPointCreatedData:
		vm.RecoveryPoints = append(vm.RecoveryPoints, RecoveryPoint{
			ID: d.ID, Time: d.Time, AppConsistent: d.AppConsistent, Cycle: d.Cycle, Epoch: d.Epoch, Roots: d.Roots,
		})
	case RecoveryPointsPrunedData:
		vm.RecoveryPoints = slices.DeleteFunc(vm.RecoveryPoints, func(rp RecoveryPoint) bool {
			return slices.Contains(d.IDs, rp.ID)
		})
	case HealthChangedData:
		vm.Health = d.Health
	default:
		vm.applyFailover(r)
	}
}

func (vm *VM) applyFailover(r Record) {
	switch d := r.Data.(type) {
	case TestFailoverStartedData:
		vm.TestState = TestInProgress
	case TestFailoverCompletedData:
		vm.TestState = TestCompleted
	case TestCleanupStartedData:
		vm.TestState = TestCleaningUp
	case TestFailoverCleanedUpData:
		vm.TestState = TestNone
	case FailoverStartedData:
		vm.FailoverMode, vm.FailoverPoint = d.Mode, d.RecoveryPoint
		vm.State = PlannedFailoverInProgress
		if d.Mode == FailoverUnplanned {
			vm.State = UnplannedFailoverInProgress
		}
	case FailoverFailedData:
		if d.Mode == FailoverTest {
			vm.TestState = TestNone
			return
		}
		vm.State = PlannedFailoverFailed
		if d.Mode == FailoverUnplanned {
			vm.State = UnplannedFailoverFailed
		}
	case FailoverCompletedData:
		vm.State = FailoverCommitPending
		vm.Epoch, vm.ActiveHost, vm.ActiveSite, vm.FailoverPoint = d.Epoch, d.Host, d.Site, d.RecoveryPoint
	case RecoveryPointChangedData:
		vm.FailoverPoint = d.RecoveryPoint
	case FailoverCommittedData:
		vm.State = FailoverCommittedState
		vm.RecoveryPoints = nil
	case FailoverCancelledData:
		vm.State = Protected
		vm.Epoch, vm.ActiveHost, vm.ActiveSite = d.Epoch, vm.SourceHost, vm.SourceSite
		vm.FailoverMode, vm.FailoverPoint = "", ""
	case ReverseReplicationStartedData:
		vm.State = ReverseReplicationState
		vm.SourceHost, vm.SourceSite = d.SourceHost, d.SourceSite
		vm.RecoveryHost, vm.TargetSite = d.RecoveryHost, d.TargetSite
		vm.RecoveryPoints = nil
	case ReverseReplicationCompletedData:
		vm.State = Protected
		vm.FailoverMode, vm.FailoverPoint = "", ""
	}
}
