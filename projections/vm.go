package projections

import (
	"time"

	"github.com/siterecovery/siterecovery/events"
)

// vmModel is the stored VM read model: the aggregate's state as
// events.VM.Apply folds it, and what only readers need.
type vmModel struct {
	VM             events.VM
	IRProgress     *Progress       `json:",omitempty"`
	ResyncProgress *Progress       `json:",omitempty"`
	Issues         []string        `json:",omitempty"`
	Test           testModel       `json:",omitzero"`
	Divergence     *DivergenceView `json:",omitempty"`
	LastError      *ErrorView      `json:",omitempty"`
	LastEventAt    time.Time       `json:",omitzero"`
}

type testModel struct {
	Host          string `json:",omitempty"`
	RecoveryPoint string `json:",omitempty"`
	Network       string `json:",omitempty"`
}

// Apply folds one VM event.
func (m *vmModel) Apply(r events.Record) {
	m.VM.Apply(r)
	m.LastEventAt = r.Meta.At
	switch d := r.Data.(type) {
	case events.VMCreatedData:
		*m = vmModel{VM: m.VM, LastEventAt: r.Meta.At}
	case events.InitialReplicationStartedData:
		m.IRProgress = &Progress{TotalBytes: d.TotalBytes}
	case events.InitialReplicationProgressData:
		m.IRProgress = &Progress{DoneBytes: d.DoneBytes, TotalBytes: d.TotalBytes}
	case events.InitialReplicationCompletedData:
		m.IRProgress = complete(m.IRProgress)
	case events.ResyncStartedData:
		m.ResyncProgress = &Progress{TotalBytes: d.TotalBytes}
	case events.ResyncProgressData:
		m.ResyncProgress = &Progress{DoneBytes: d.DoneBytes, TotalBytes: d.TotalBytes, SentBytes: d.SentBytes}
	case events.ResyncCompletedData:
		m.ResyncProgress = complete(m.ResyncProgress)
		m.ResyncProgress.SentBytes = d.SentBytes
	case events.ProtectionDisabledData:
		m.IRProgress, m.ResyncProgress, m.Issues = nil, nil, nil
	default:
		m.applyOther(r)
	}
}

func (m *vmModel) applyOther(r events.Record) {
	switch d := r.Data.(type) {
	case events.HealthChangedData:
		m.Issues = d.Issues
	case events.ReplicationErrorData:
		m.LastError = &ErrorView{Host: d.Host, Code: d.Code, Message: d.Message, At: r.Meta.At}
	case events.TestFailoverStartedData:
		m.Test = testModel{Host: d.Host, RecoveryPoint: d.RecoveryPoint, Network: d.Network}
	case events.TestFailoverCompletedData:
		m.Test.RecoveryPoint = d.RecoveryPoint
	case events.TestFailoverCleanedUpData:
		m.Test = testModel{}
	case events.DivergenceDetectedData:
		m.Divergence = &DivergenceView{Host: d.Host, Epoch: d.Epoch, Blocks: d.Blocks, AsideImages: d.AsideImages}
	}
}

func complete(p *Progress) *Progress {
	if p == nil {
		return &Progress{}
	}
	return &Progress{DoneBytes: p.TotalBytes, TotalBytes: p.TotalBytes, SentBytes: p.SentBytes}
}

// Progress is how far an initial replication or a resync has come.
type Progress struct {
	DoneBytes  int64 `json:"done_bytes"`
	TotalBytes int64 `json:"total_bytes"`
	SentBytes  int64 `json:"sent_bytes,omitempty"`
}

// DivergenceView: a fenced former primary held writes after the recovery
// point; its disks were kept aside.
type DivergenceView struct {
	Host        string            `json:"host"`
	Epoch       uint64            `json:"epoch"`
	Blocks      int64             `json:"blocks"`
	AsideImages map[string]string `json:"aside_images,omitempty"`
}

// ErrorView is the last error an agent reported for a VM.
type ErrorView struct {
	Host    string    `json:"host"`
	Code    string    `json:"code"`
	Message string    `json:"message"`
	At      time.Time `json:"at"`
}

// VMView is the answer of the vm query and an item of vms. The fields from
// name to disks are the contract of `vm show --json`.
type VMView struct {
	Name              string              `json:"name"`
	Host              string              `json:"host"`
	ProtectionState   string              `json:"protection_state"`
	TestFailoverState string              `json:"test_failover_state"`
	SourceHost        string              `json:"source_host"`
	RecoveryHost      string              `json:"recovery_host"`
	ActiveSite        string              `json:"active_site"`
	Epoch             uint64              `json:"epoch"`
	Health            string              `json:"health"`
	RPOSeconds        *int64              `json:"rpo_seconds"`
	AllowedOperations []string            `json:"allowed_operations"`
	RecoveryPoints    []RecoveryPointView `json:"recovery_points"`
	Disks             []DiskView          `json:"disks"`

	Cloud                 string            `json:"cloud"`
	SourceSite            string            `json:"source_site"`
	TargetSite            string            `json:"target_site"`
	TargetCloud           string            `json:"target_cloud"`
	Policy                string            `json:"policy"`
	Pairing               string            `json:"pairing"`
	FailoverMode          string            `json:"failover_mode,omitempty"`
	FailoverRecoveryPoint string            `json:"failover_recovery_point,omitempty"`
	LastRecoveryPointTime *time.Time        `json:"last_recovery_point_time,omitempty"`
	IRProgress            *Progress         `json:"ir_progress,omitempty"`
	ResyncProgress        *Progress         `json:"resync_progress,omitempty"`
	Issues                []string          `json:"issues"`
	TestFailover          *TestFailoverView `json:"test_failover,omitempty"`
	Divergence            *DivergenceView   `json:"divergence,omitempty"`
	LastError             *ErrorView        `json:"last_error,omitempty"`
	// Version is the log sequence of the VM's last event.
	Version uint64 `json:"version"`
}

// RecoveryPointView is one recovery point of a VM.
type RecoveryPointView struct {
	ID            string    `json:"id"`
	Time          time.Time `json:"time"`
	AppConsistent bool      `json:"app_consistent"`
}

// DiskView is one disk of a VM: where the active host serves it and where
// the recovery host keeps its replica (filled in by agents). NBDURL is
// empty while the active host does not serve it: a planned failover in
// progress or failed has stopped it.
type DiskView struct {
	Name         string `json:"name"`
	Size         int64  `json:"size"`
	Image        string `json:"image"`
	ReplicaImage string `json:"replica_image"`
	NBDURL       string `json:"nbd_url"`
}

// TestFailoverView is the running test failover of a VM.
type TestFailoverView struct {
	State         string         `json:"state"`
	Host          string         `json:"host"`
	RecoveryPoint string         `json:"recovery_point,omitempty"`
	Network       string         `json:"network,omitempty"`
	Disks         []TestDiskView `json:"disks"`
}

// TestDiskView is a disk of the test VM.
type TestDiskView struct {
	Name   string `json:"name"`
	Image  string `json:"image"`
	NBDURL string `json:"nbd_url"`
}

// view derives the answer from the model at instant now.
func (m *vmModel) view(now time.Time) VMView {
	vm := &m.VM
	v := VMView{
		Name: vm.Name, Host: vm.ActiveHost, ProtectionState: string(vm.State),
		TestFailoverState: string(vm.TestState), SourceHost: vm.SourceHost, RecoveryHost: vm.RecoveryHost,
		ActiveSite: vm.ActiveSite, Epoch: vm.Epoch, Health: vm.Health,
		AllowedOperations: operationNames(vm.Allowed()),
		RecoveryPoints:    make([]RecoveryPointView, 0, len(vm.RecoveryPoints)),
		Disks:             m.disks(),
		Cloud:             vm.Cloud, SourceSite: vm.SourceSite, TargetSite: vm.TargetSite, TargetCloud: vm.TargetCloud,
		Policy: vm.Policy, Pairing: vm.Pairing, FailoverMode: vm.FailoverMode, FailoverRecoveryPoint: vm.FailoverPoint,
		IRProgress: m.IRProgress, ResyncProgress: m.ResyncProgress, Issues: nonNil(m.Issues),
		TestFailover: m.testView(), Divergence: m.Divergence, LastError: m.LastError, Version: vm.Version,
	}
	if v.Health == "" {
		v.Health = events.HealthNormal
	}
	for _, rp := range vm.RecoveryPoints {
		v.RecoveryPoints = append(v.RecoveryPoints, RecoveryPointView{ID: rp.ID, Time: rp.Time, AppConsistent: rp.AppConsistent})
		if v.LastRecoveryPointTime == nil || rp.Time.After(*v.LastRecoveryPointTime) {
			t := rp.Time
			v.LastRecoveryPointTime = &t
		}
	}
	if v.LastRecoveryPointTime != nil {
		rpo := max(int64(now.Sub(*v.LastRecoveryPointTime)/time.Second), 0)
		v.RPOSeconds = &rpo
	}
	return v
}

// disks: the source image on the active host at the current epoch (its
// address while served), the replica image on the recovery host.
func (m *vmModel) disks() []DiskView {
	vm := &m.VM
	stopped := vm.State == events.PlannedFailoverInProgress || vm.State == events.PlannedFailoverFailed
	out := make([]DiskView, 0, len(vm.Disks))
	for _, d := range vm.Disks {
		dv := DiskView{Name: d.Name, Size: d.Size}
		for _, im := range vm.Images[d.Name] {
			switch {
			case im.Role == events.DiskRoleSource && im.Host == vm.ActiveHost && im.Epoch == vm.Epoch:
				dv.Image = im.Image
				if !stopped {
					dv.NBDURL = im.NBDURL
				}
			case im.Role == events.DiskRoleReplica && im.Host == vm.RecoveryHost && vm.RecoveryHost != "":
				dv.ReplicaImage = im.Image
			}
		}
		out = append(out, dv)
	}
	return out
}

func (m *vmModel) testView() *TestFailoverView {
	vm := &m.VM
	if vm.TestState == events.TestNone || vm.TestState == "" {
		return nil
	}
	t := &TestFailoverView{State: string(vm.TestState), Host: m.Test.Host, RecoveryPoint: m.Test.RecoveryPoint,
		Network: m.Test.Network, Disks: []TestDiskView{}}
	for _, d := range vm.Disks {
		td := TestDiskView{Name: d.Name}
		for _, im := range vm.Images[d.Name] {
			if im.Role == events.DiskRoleTest && (m.Test.Host == "" || im.Host == m.Test.Host) {
				td.Image, td.NBDURL = im.Image, im.NBDURL
			}
		}
		t.Disks = append(t.Disks, td)
	}
	return t
}

func operationNames(ops []events.Operation) []string {
	out := make([]string, len(ops))
	for i, op := range ops {
		out[i] = string(op)
	}
	return out
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
