package agentproto

import "time"

// The verbs of the replication reports: what keeps a VM's protection
// going, from enabling it to disabling it.
const (
	VerbHeartbeat       = "heartbeat"
	VerbDiskProvisioned = "disk_provisioned"
	VerbIRProgress      = "ir_progress"
	VerbIRCompleted     = "ir_completed"
	VerbRecoveryPoint   = "recovery_point"
	VerbPointsPruned    = "points_pruned"
	VerbError           = "error"
	VerbDisabled        = "protection_disabled"
)

// ReplicationVerbs lists the verbs of the replication reports.
var ReplicationVerbs = []string{
	VerbHeartbeat, VerbDiskProvisioned, VerbIRProgress, VerbIRCompleted,
	VerbRecoveryPoint, VerbPointsPruned, VerbError, VerbDisabled,
}

// The codes an ErrorReport carries.
const (
	// CodeResyncRequired means the change log of the VM's disks was lost or
	// overflowed: the VM needs a resync. The control plane moves the VM to
	// ResyncRequired; every other code is recorded as a replication error.
	CodeResyncRequired = "resync_required"
	// CodeBadBatch: the recovery host refused a batch that does not decode.
	CodeBadBatch = "bad_batch"
	// CodeStaleEpoch: the recovery host refused a batch of an older epoch.
	CodeStaleEpoch = "stale_epoch"
	// CodeCycleGap: the recovery host dropped a batch after a missing cycle.
	CodeCycleGap = "cycle_gap"
	// CodeApplyFailed: the recovery host could not apply a cycle.
	CodeApplyFailed = "apply_failed"
	// CodeShipFailed: the source could not ship a cycle.
	CodeShipFailed = "ship_failed"
	// CodeDiskFailed: a disk image could not be opened, read or written.
	CodeDiskFailed = "disk_failed"
	// CodeVerifyFailed: a planned failover's recovery host holds a replica
	// that differs from the source's final state.
	CodeVerifyFailed = "verify_failed"
)

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

// RecoveryPointReport: the recovery host applied a whole cycle. Time is
// the instant the source closed the cycle; Roots are the disks' hash tree
// roots (hex) at the point; Bytes is what the cycle shipped.
type RecoveryPointReport struct {
	CommandID     string            `json:"command_id,omitempty"`
	VM            string            `json:"vm"`
	ID            string            `json:"id"`
	Time          time.Time         `json:"time"`
	AppConsistent bool              `json:"app_consistent"`
	Cycle         uint64            `json:"cycle"`
	Epoch         uint64            `json:"epoch"`
	Roots         map[string]string `json:"roots,omitempty"`
	// RootsHash names the hash of Roots (hostsync/hashtree.HashName);
	// empty from agents before it (SHA-256).
	RootsHash string `json:"roots_hash,omitempty"`
	Bytes     int64  `json:"bytes"`
}

// PointsPrunedReport: the recovery host dropped points per the retention.
type PointsPrunedReport struct {
	CommandID string   `json:"command_id,omitempty"`
	VM        string   `json:"vm"`
	IDs       []string `json:"ids"`
}

// ErrorReport: something went wrong replicating a VM; Code is one of the
// Code constants.
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
