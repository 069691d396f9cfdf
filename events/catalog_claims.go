package events

// Claims: small events that reserve a thing on its own aggregate so that a
// uniqueness rule spanning aggregates holds under concurrency (optimistic
// concurrency on the claimed aggregate decides the race). A claim is released
// by its counterpart event.

// CloudPairedData: the cloud joined pairing Pairing as Role ("source" or
// "target"); a cloud is in at most one pairing.
type CloudPairedData struct {
	Cloud   string `json:"cloud"`
	Pairing string `json:"pairing"`
	Role    string `json:"role"`
}

// CloudUnpairedData: the cloud left pairing Pairing.
type CloudUnpairedData struct {
	Cloud   string `json:"cloud"`
	Pairing string `json:"pairing"`
}

// HostAssignedData: the host joined cloud Cloud; a host is in at most one
// cloud, and a VM created on it lives in that cloud.
type HostAssignedData struct {
	Host  string `json:"host"`
	Cloud string `json:"cloud"`
}

// HostUnassignedData: the host left cloud Cloud (a cloud create that could
// not complete gives its hosts back).
type HostUnassignedData struct {
	Host  string `json:"host"`
	Cloud string `json:"cloud"`
}

// Pairing roles in CloudPairedData.
const (
	PairingRoleSource = "source"
	PairingRoleTarget = "target"
)

func (CloudPairedData) EventType() Type    { return CloudPaired }
func (CloudUnpairedData) EventType() Type  { return CloudUnpaired }
func (HostAssignedData) EventType() Type   { return HostAssigned }
func (HostUnassignedData) EventType() Type { return HostUnassigned }
