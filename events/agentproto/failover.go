package agentproto

// The verbs of the failover reports: the agents' steps of a (test)
// failover, a resync and the fencing of a former source. Each report
// carries a ReportHead.
const (
	VerbVMStopped         = "vm_stopped"
	VerbFailoverReady     = "failover_ready"
	VerbTestFailoverReady = "test_failover_ready"
	VerbTestCleanupDone   = "test_cleanup_done"
	VerbResyncProgress    = "resync_progress"
	VerbResyncCompleted   = "resync_completed"
	VerbDivergence        = "divergence"
)

// FailoverVerbs lists the verbs of the failover reports.
var FailoverVerbs = []string{
	VerbVMStopped, VerbFailoverReady, VerbTestFailoverReady, VerbTestCleanupDone,
	VerbResyncProgress, VerbResyncCompleted, VerbDivergence,
}

// ReportHead is what every failover report carries: the VM, the epoch the
// agent acted at, an optional command_id (a retried report appends nothing
// twice) and Job, the operation's job id, which the resulting events carry
// as their correlation id (the job of the operation the VM is in when Job
// is empty).
type ReportHead struct {
	CommandID string `json:"command_id,omitempty"`
	VM        string `json:"vm"`
	Job       string `json:"job,omitempty"`
	Epoch     uint64 `json:"epoch"`
}

// VMStoppedReport: the source removed the VM's exports and closed and
// shipped a final cycle (planned: FinalCycle is set), or stopped it best
// effort (unplanned).
type VMStoppedReport struct {
	ReportHead
	FinalCycle uint64            `json:"final_cycle,omitempty"`
	Roots      map[string]string `json:"roots,omitempty"`
	// RootsHash names the hash of Roots (hostsync/hashtree.HashName);
	// empty from agents before it (SHA-256).
	RootsHash string `json:"roots_hash,omitempty"`
}

// ReadyDisk is a disk an agent serves after a (test) failover.
type ReadyDisk struct {
	Disk   string `json:"disk"`
	Image  string `json:"image"`
	NBDURL string `json:"nbd_url,omitempty"`
}

// FailoverReadyReport: the recovery host serves the VM at Epoch (e+1) from
// RecoveryPoint.
type FailoverReadyReport struct {
	ReportHead
	RecoveryPoint string      `json:"recovery_point"`
	Disks         []ReadyDisk `json:"disks"`
}

// TestFailoverReadyReport: the test copy is served.
type TestFailoverReadyReport struct {
	ReportHead
	Disks []ReadyDisk `json:"disks"`
}

// TestCleanupDoneReport: the test copy and its exports are gone.
type TestCleanupDoneReport struct {
	ReportHead
}

// ResyncProgressReport: how far a resync has come.
type ResyncProgressReport struct {
	ReportHead
	DoneBytes  int64 `json:"done_bytes"`
	TotalBytes int64 `json:"total_bytes"`
	SentBytes  int64 `json:"sent_bytes"`
}

// ResyncCompletedReport: both sides are equal.
type ResyncCompletedReport struct {
	ReportHead
	SentBytes int64 `json:"sent_bytes"`
}

// DivergenceReport: a fenced former source holds writes made after the
// failover's point at Epoch (its old epoch); its disks were set aside.
type DivergenceReport struct {
	ReportHead
	Blocks      int64             `json:"blocks"`
	AsideImages map[string]string `json:"aside_images,omitempty"`
}
