package events

import "time"

// The fabric: vault, sites, hosts, clouds, policies, pairings and network
// mappings.

// VaultCreatedData: the vault (this control plane's log) was initialised.
type VaultCreatedData struct {
	Name string `json:"name"`
}

// SiteRegisteredData: a site (a VMM server in the seed) joined the vault.
type SiteRegisteredData struct {
	Name string `json:"name"`
}

// SiteUnregisteredData: a site left the vault.
type SiteUnregisteredData struct {
	Name string `json:"name"`
}

// HostRegisteredData: a host of a site was registered.
type HostRegisteredData struct {
	Name string `json:"name"`
	Site string `json:"site"`
}

// HostUnregisteredData: a host was removed.
type HostUnregisteredData struct {
	Name string `json:"name"`
}

// HostReachableData: a host's agent is heard from (again). Since is the
// heartbeat's time: one received before the host was registered counts.
type HostReachableData struct {
	Name  string    `json:"name"`
	Agent string    `json:"agent,omitempty"`
	Since time.Time `json:"since"`
}

// HostUnreachableData: no heartbeat from the host within the threshold,
// since its last heartbeat or, for a host never heard from, since its
// registration or the control plane's start. LastSeen is the last
// heartbeat heard (the zero time: none).
type HostUnreachableData struct {
	Name     string    `json:"name"`
	LastSeen time.Time `json:"last_seen"`
}

// CloudCreatedData: a cloud groups hosts of one site.
type CloudCreatedData struct {
	Name  string   `json:"name"`
	Site  string   `json:"site"`
	Hosts []string `json:"hosts,omitempty"`
}

// CloudHostAddedData: a host joined a cloud.
type CloudHostAddedData struct {
	Cloud string `json:"cloud"`
	Host  string `json:"host"`
}

// PolicySettings are a replication policy's settings.
type PolicySettings struct {
	// CopyFrequency is how often a cycle closes and ships (at least
	// MinCopyFrequency; see CopyInterval).
	CopyFrequency Duration `json:"copy_frequency"`
	// Retention is how long recovery points are kept (0 to 720h).
	Retention Duration `json:"retention"`
	// AppConsistentEvery is the interval of app-consistent points (0: none).
	AppConsistentEvery Duration `json:"app_consistent_every"`
	// Compression turns delta compression on.
	Compression bool `json:"compression"`
	// StartAt delays initial replication to this instant (zero: now).
	StartAt time.Time `json:"start_at,omitempty"`
	// DeleteReplicaOnDisable removes the replica images when protection
	// is disabled.
	DeleteReplicaOnDisable bool `json:"delete_replica_on_disable"`
	// RPOThreshold raises Warning when the RPO stays above it.
	RPOThreshold Duration `json:"rpo_threshold"`
	// QuiesceCommand and ThawCommand run on the source host around an
	// app-consistent cycle.
	QuiesceCommand string `json:"quiesce_command,omitempty"`
	ThawCommand    string `json:"thaw_command,omitempty"`
}

// PolicyCreatedData: a replication policy was created.
type PolicyCreatedData struct {
	Name string `json:"name"`
	PolicySettings
}

// PolicyUpdatedData: a policy's settings changed; every VM under it follows.
type PolicyUpdatedData struct {
	Name string `json:"name"`
	PolicySettings
}

// PolicyDeletedData: a policy was deleted.
type PolicyDeletedData struct {
	Name string `json:"name"`
}

// PairingCreatedData: a source cloud is paired with a target cloud under a
// policy.
type PairingCreatedData struct {
	Name        string `json:"name"`
	SourceCloud string `json:"source_cloud"`
	TargetCloud string `json:"target_cloud"`
	Policy      string `json:"policy"`
}

// PairingDeletedData: a pairing was removed.
type PairingDeletedData struct {
	Name string `json:"name"`
}

// NetmapCreatedData: a source network maps to a target network at failover.
type NetmapCreatedData struct {
	Name          string `json:"name"`
	SourceNetwork string `json:"source_network"`
	TargetNetwork string `json:"target_network"`
}

// NetmapDeletedData: a network mapping was removed.
type NetmapDeletedData struct {
	Name string `json:"name"`
}

func (VaultCreatedData) EventType() Type     { return VaultCreated }
func (SiteRegisteredData) EventType() Type   { return SiteRegistered }
func (SiteUnregisteredData) EventType() Type { return SiteUnregistered }
func (HostRegisteredData) EventType() Type   { return HostRegistered }
func (HostUnregisteredData) EventType() Type { return HostUnregistered }
func (HostReachableData) EventType() Type    { return HostReachable }
func (HostUnreachableData) EventType() Type  { return HostUnreachable }
func (CloudCreatedData) EventType() Type     { return CloudCreated }
func (CloudHostAddedData) EventType() Type   { return CloudHostAdded }
func (PolicyCreatedData) EventType() Type    { return PolicyCreated }
func (PolicyUpdatedData) EventType() Type    { return PolicyUpdated }
func (PolicyDeletedData) EventType() Type    { return PolicyDeleted }
func (PairingCreatedData) EventType() Type   { return PairingCreated }
func (PairingDeletedData) EventType() Type   { return PairingDeleted }
func (NetmapCreatedData) EventType() Type    { return NetmapCreated }
func (NetmapDeletedData) EventType() Type    { return NetmapDeleted }
