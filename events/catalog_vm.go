package events

import "time"

// The VM aggregate's events: creation, protection, replication, recovery
// points, health, test failover, failover, commit, reverse replication and
// fencing.

// DiskSpec is one disk of a VM as created.
type DiskSpec struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
}

// VMCreatedData: a VM with disks exists on a host of a cloud.
type VMCreatedData struct {
	Name     string     `json:"name"`
	Host     string     `json:"host"`
	Site     string     `json:"site"`
	Cloud    string     `json:"cloud"`
	Disks    []DiskSpec `json:"disks"`
	Networks []string   `json:"networks,omitempty"`
}

// Disk roles in DiskProvisionedData.
const (
	DiskRoleSource  = "source"
	DiskRoleReplica = "replica"
	DiskRoleTest    = "test"
	DiskRoleAside   = "aside"
)

// DiskProvisionedData: an agent created or located a disk image for the VM.
type DiskProvisionedData struct {
	Host   string `json:"host"`
	Disk   string `json:"disk"`
	Role   string `json:"role"`
	Image  string `json:"image"`
	NBDURL string `json:"nbd_url,omitempty"`
	Epoch  uint64 `json:"epoch"`
}

// ProtectionEnableStartedData: enable was accepted; the replication
// direction and settings are fixed here.
type ProtectionEnableStartedData struct {
	Pairing      string         `json:"pairing"`
	Policy       string         `json:"policy"`
	Settings     PolicySettings `json:"settings"`
	SourceHost   string         `json:"source_host"`
	SourceSite   string         `json:"source_site"`
	RecoveryHost string         `json:"recovery_host"`
	TargetSite   string         `json:"target_site"`
	TargetCloud  string         `json:"target_cloud"`
}

// ProtectionEnableFailedData: enabling failed; the VM stays unprotected.
type ProtectionEnableFailedData struct {
	Reason string `json:"reason"`
}

// InitialReplicationStartedData: the initial copy began.
type InitialReplicationStartedData struct {
	TotalBytes int64 `json:"total_bytes"`
}

// InitialReplicationProgressData: bytes of the initial copy applied so far.
type InitialReplicationProgressData struct {
	DoneBytes  int64 `json:"done_bytes"`
	TotalBytes int64 `json:"total_bytes"`
}

// InitialReplicationCompletedData: the replica holds the whole disk.
type InitialReplicationCompletedData struct {
	SentBytes int64 `json:"sent_bytes"`
}

// ProtectionDisableStartedData: disable was accepted.
type ProtectionDisableStartedData struct {
	DeleteReplica bool `json:"delete_replica"`
}

// ProtectionDisabledData: replication stopped and the replica was kept or
// deleted.
type ProtectionDisabledData struct {
	ReplicaDeleted bool `json:"replica_deleted"`
}

// ReplicationPausedData: cycles stop shipping; changes keep being tracked.
type ReplicationPausedData struct{}

// ReplicationResumedData: shipping resumed.
type ReplicationResumedData struct{}

// ResyncRequiredData: the change log cannot be trusted (lost, overflowed);
// the replica must be compared block by block.
type ResyncRequiredData struct {
	Reason string `json:"reason"`
}

// ResyncStartedData: a block-hash comparison of both sides began.
type ResyncStartedData struct {
	TotalBytes int64 `json:"total_bytes"`
}

// ResyncProgressData: how far the comparison has come.
type ResyncProgressData struct {
	DoneBytes  int64 `json:"done_bytes"`
	TotalBytes int64 `json:"total_bytes"`
	SentBytes  int64 `json:"sent_bytes"`
}

// ResyncCompletedData: both sides are equal again.
type ResyncCompletedData struct {
	SentBytes int64 `json:"sent_bytes"`
}

// RecoveryPointCreatedData: the recovery host applied a whole cycle; the
// replica can be restored to this point. Time is the instant the source
// closed the cycle.
type RecoveryPointCreatedData struct {
	ID            string            `json:"id"`
	Time          time.Time         `json:"time"`
	AppConsistent bool              `json:"app_consistent"`
	Cycle         uint64            `json:"cycle"`
	Epoch         uint64            `json:"epoch"`
	Roots         map[string]string `json:"roots,omitempty"`
	// RootsHash names the hash of Roots ("blake3"); omitted by agents
	// before it, whose roots are SHA-256 (hostsync/hashtree.HashName).
	RootsHash string `json:"roots_hash,omitempty"`
	Bytes     int64  `json:"bytes"`
}

// RecoveryPointsPrunedData: points dropped by the retention policy or at
// commit.
type RecoveryPointsPrunedData struct {
	IDs []string `json:"ids"`
}

// Replication health values.
const (
	HealthNormal   = "Normal"
	HealthWarning  = "Warning"
	HealthCritical = "Critical"
)

// HealthChangedData: the VM's replication health changed.
type HealthChangedData struct {
	Health string   `json:"health"`
	Issues []string `json:"issues,omitempty"`
}

// ReplicationErrorData: an agent reported an error for the VM.
type ReplicationErrorData struct {
	Host    string `json:"host"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// TestFailoverStartedData: a test failover to a point began.
type TestFailoverStartedData struct {
	RecoveryPoint string `json:"recovery_point"`
	Network       string `json:"network,omitempty"`
	Host          string `json:"host"`
}

// TestFailoverCompletedData: the test VM runs on the recovery host.
type TestFailoverCompletedData struct {
	RecoveryPoint string `json:"recovery_point"`
}

// TestCleanupStartedData: the test VM and its copy are being removed.
type TestCleanupStartedData struct{}

// TestFailoverCleanedUpData: the test is gone; another may start.
type TestFailoverCleanedUpData struct{}

// Failover modes.
const (
	FailoverTest      = "test"
	FailoverPlanned   = "planned"
	FailoverUnplanned = "unplanned"
)

// FailoverStartedData: a planned or unplanned failover began.
type FailoverStartedData struct {
	Mode           string `json:"mode"`
	RecoveryPoint  string `json:"recovery_point,omitempty"`
	ShutdownSource bool   `json:"shutdown_source"`
	FromHost       string `json:"from_host"`
	ToHost         string `json:"to_host"`
	FromSite       string `json:"from_site"`
	ToSite         string `json:"to_site"`
}

// SourceStoppedData: the source stopped serving the VM; FinalCycle is the
// last cycle it closed and Roots the hash-tree roots of its disks then (by
// disk name), which the recovery host verifies its replica against.
type SourceStoppedData struct {
	Host       string            `json:"host"`
	FinalCycle uint64            `json:"final_cycle"`
	Roots      map[string]string `json:"roots,omitempty"`
	// RootsHash names the hash of Roots ("blake3"); omitted by agents
	// before it, whose roots are SHA-256. The recovery host verifies only
	// roots of its own hash.
	RootsHash string `json:"roots_hash,omitempty"`
}

// FailoverFailedData: a failover step failed. Mode test ends a test
// failover that did not come up (the test sub-state goes back to None).
type FailoverFailedData struct {
	Mode   string `json:"mode"`
	Step   string `json:"step"`
	Reason string `json:"reason"`
}

// NIC is a VM network interface after network mapping.
type NIC struct {
	SourceNetwork string `json:"source_network"`
	TargetNetwork string `json:"target_network,omitempty"`
}

// FailoverCompletedData: the VM runs on Host at Epoch from RecoveryPoint.
type FailoverCompletedData struct {
	Mode          string `json:"mode"`
	RecoveryPoint string `json:"recovery_point"`
	Epoch         uint64 `json:"epoch"`
	Host          string `json:"host"`
	Site          string `json:"site"`
	NICs          []NIC  `json:"nics,omitempty"`
}

// RecoveryPointChangedData: before commit, the failed-over VM was moved to
// another point.
type RecoveryPointChangedData struct {
	RecoveryPoint string `json:"recovery_point"`
}

// FailoverCommittedData: the failover is final; old points are dropped.
type FailoverCommittedData struct {
	Mode string `json:"mode"`
}

// FailoverCancelledData: the VM goes back to its replica role in the old
// direction.
type FailoverCancelledData struct {
	Epoch uint64 `json:"epoch"`
}

// ReverseReplicationStartedData: replication in the new direction began.
type ReverseReplicationStartedData struct {
	SourceHost   string `json:"source_host"`
	SourceSite   string `json:"source_site"`
	RecoveryHost string `json:"recovery_host"`
	TargetSite   string `json:"target_site"`
	Resync       bool   `json:"resync"`
}

// ReverseReplicationCompletedData: protected again, direction reversed.
type ReverseReplicationCompletedData struct {
	SentBytes int64 `json:"sent_bytes"`
}

// DivergenceDetectedData: a fenced former primary holds writes made after the
// recovery point used; its disks were set aside.
type DivergenceDetectedData struct {
	Host        string            `json:"host"`
	Epoch       uint64            `json:"epoch"`
	Blocks      int64             `json:"blocks"`
	AsideImages map[string]string `json:"aside_images,omitempty"`
}

func (VMCreatedData) EventType() Type                   { return VMCreated }
func (DiskProvisionedData) EventType() Type             { return DiskProvisioned }
func (ProtectionEnableStartedData) EventType() Type     { return ProtectionEnableStarted }
func (ProtectionEnableFailedData) EventType() Type      { return ProtectionEnableFailed }
func (InitialReplicationStartedData) EventType() Type   { return InitialReplicationStarted }
func (InitialReplicationProgressData) EventType() Type  { return InitialReplicationProgress }
func (InitialReplicationCompletedData) EventType() Type { return InitialReplicationCompleted }
func (ProtectionDisableStartedData) EventType() Type    { return ProtectionDisableStarted }
func (ProtectionDisabledData) EventType() Type          { return ProtectionDisabled }
func (ReplicationPausedData) EventType() Type           { return ReplicationPaused }
func (ReplicationResumedData) EventType() Type          { return ReplicationResumed }
func (ResyncRequiredData) EventType() Type              { return ResyncRequired }
func (ResyncStartedData) EventType() Type               { return ResyncStarted }
func (ResyncProgressData) EventType() Type              { return ResyncProgress }
func (ResyncCompletedData) EventType() Type             { return ResyncCompleted }
func (RecoveryPointCreatedData) EventType() Type        { return RecoveryPointCreated }
func (RecoveryPointsPrunedData) EventType() Type        { return RecoveryPointsPruned }
func (HealthChangedData) EventType() Type               { return HealthChanged }
func (ReplicationErrorData) EventType() Type            { return ReplicationError }
func (TestFailoverStartedData) EventType() Type         { return TestFailoverStarted }
func (TestFailoverCompletedData) EventType() Type       { return TestFailoverCompleted }
func (TestCleanupStartedData) EventType() Type          { return TestCleanupStarted }
func (TestFailoverCleanedUpData) EventType() Type       { return TestFailoverCleanedUp }
func (FailoverStartedData) EventType() Type             { return FailoverStarted }
func (SourceStoppedData) EventType() Type               { return SourceStopped }
func (FailoverFailedData) EventType() Type              { return FailoverFailed }
func (FailoverCompletedData) EventType() Type           { return FailoverCompleted }
func (RecoveryPointChangedData) EventType() Type        { return RecoveryPointChanged }
func (FailoverCommittedData) EventType() Type           { return FailoverCommitted }
func (FailoverCancelledData) EventType() Type           { return FailoverCancelled }
func (ReverseReplicationStartedData) EventType() Type   { return ReverseReplicationStarted }
func (ReverseReplicationCompletedData) EventType() Type { return ReverseReplicationCompleted }
func (DivergenceDetectedData) EventType() Type          { return DivergenceDetected }
