package events

// VerificationCompletedData: `vm verify` compared the replica (re-hashed
// from its images) with the source's disks at one recovery point. Equal
// false lists the differing ranges; the VM then also needs a resync.
type VerificationCompletedData struct {
	SourceHost   string      `json:"source_host"`
	RecoveryHost string      `json:"recovery_host"`
	Point        string      `json:"point"`
	Epoch        uint64      `json:"epoch"`
	Cycle        uint64      `json:"cycle"`
	Equal        bool        `json:"equal"`
	Differing    []DiskRange `json:"differing"`
}

// DiskRange is a run of bytes of a VM disk.
type DiskRange struct {
	Disk   string `json:"disk"`
	Offset int64  `json:"offset"`
	Length int64  `json:"length"`
}

func (VerificationCompletedData) EventType() Type { return VerificationCompleted }
