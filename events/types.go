package events

import (
	"encoding/json"
	"fmt"
	"time"
)

// Type is an event type: a constant subject token, the last token of the
// event's subject. Types are unique across kinds.
type Type string

// Data is the typed payload of one event. Every event type has exactly one
// Data struct, and that struct's EventType returns the constant.
type Data interface {
	EventType() Type
}

// The event catalog. Adding a type means: a constant here, a Kind in
// typeKinds, a struct in a catalog_*.go file with its EventType method, a
// case in the decode switch of codec.go (decodeData and the decode*Data
// functions it falls through to), a golden file in testdata/golden and an
// entry in docs/reference/events.md.
const (
	VaultCreated Type = "vault_created"

	SiteRegistered   Type = "site_registered"
	SiteUnregistered Type = "site_unregistered"

	HostRegistered   Type = "host_registered"
	HostUnregistered Type = "host_unregistered"
	HostReachable    Type = "host_reachable"
	HostUnreachable  Type = "host_unreachable"

	CloudCreated   Type = "cloud_created"
	CloudHostAdded Type = "cloud_host_added"
	CloudPaired    Type = "cloud_paired"
	CloudUnpaired  Type = "cloud_unpaired"
	HostAssigned   Type = "host_assigned"
	HostUnassigned Type = "host_unassigned"

	PolicyCreated Type = "policy_created"
	PolicyUpdated Type = "policy_updated"
	PolicyDeleted Type = "policy_deleted"

	PairingCreated Type = "pairing_created"
	PairingDeleted Type = "pairing_deleted"

	NetmapCreated Type = "netmap_created"
	NetmapDeleted Type = "netmap_deleted"

	VMCreated                   Type = "vm_created"
	DiskProvisioned             Type = "disk_provisioned"
	ProtectionEnableStarted     Type = "protection_enable_started"
	ProtectionEnableFailed      Type = "protection_enable_failed"
	InitialReplicationStarted   Type = "initial_replication_started"
	InitialReplicationProgress  Type = "initial_replication_progress"
	InitialReplicationCompleted Type = "initial_replication_completed"
	ProtectionDisableStarted    Type = "protection_disable_started"
	ProtectionDisabled          Type = "protection_disabled"
	ReplicationPaused           Type = "replication_paused"
	ReplicationResumed          Type = "replication_resumed"
	ResyncRequired              Type = "resync_required"
	ResyncStarted               Type = "resync_started"
	ResyncProgress              Type = "resync_progress"
	ResyncCompleted             Type = "resync_completed"
	RecoveryPointCreated        Type = "recovery_point_created"
	RecoveryPointsPruned        Type = "recovery_points_pruned"
	HealthChanged               Type = "health_changed"
	ReplicationError            Type = "replication_error"
	TestFailoverStarted         Type = "test_failover_started"
	TestFailoverCompleted       Type = "test_failover_completed"
	TestCleanupStarted          Type = "test_cleanup_started"
	TestFailoverCleanedUp       Type = "test_failover_cleaned_up"
	FailoverStarted             Type = "failover_started"
	SourceStopped               Type = "source_stopped"
	FailoverFailed              Type = "failover_failed"
	FailoverCompleted           Type = "failover_completed"
	RecoveryPointChanged        Type = "recovery_point_changed"
	FailoverCommitted           Type = "failover_committed"
	FailoverCancelled           Type = "failover_cancelled"
	ReverseReplicationStarted   Type = "reverse_replication_started"
	ReverseReplicationCompleted Type = "reverse_replication_completed"
	DivergenceDetected          Type = "divergence_detected"
	VerificationCompleted       Type = "verification_completed"

	PlanCreated         Type = "plan_created"
	PlanUpdated         Type = "plan_updated"
	PlanDeleted         Type = "plan_deleted"
	PlanJobStarted      Type = "plan_job_started"
	PlanGroupStarted    Type = "plan_group_started"
	PlanActionCompleted Type = "plan_action_completed"
	PlanActionStarted   Type = "plan_action_started"
	PlanSuspended       Type = "plan_suspended"
	PlanResumed         Type = "plan_resumed"
	PlanJobCompleted    Type = "plan_job_completed"
	PlanJobCancelled    Type = "plan_job_cancelled"

	AutomationAdded    Type = "automation_added"
	AutomationRemoved  Type = "automation_removed"
	AutomationExecuted Type = "automation_executed"
)

// typeKinds maps every event type to the kind of aggregate it belongs to.
// It is never written after package initialisation.
var typeKinds = map[Type]Kind{
	VaultCreated: KindVault,

	SiteRegistered: KindSite, SiteUnregistered: KindSite,

	HostRegistered: KindHost, HostUnregistered: KindHost, HostReachable: KindHost, HostUnreachable: KindHost,

	CloudCreated: KindCloud, CloudHostAdded: KindCloud,
	CloudPaired: KindCloud, CloudUnpaired: KindCloud, HostAssigned: KindHost, HostUnassigned: KindHost,

	PolicyCreated: KindPolicy, PolicyUpdated: KindPolicy, PolicyDeleted: KindPolicy,

	PairingCreated: KindPairing, PairingDeleted: KindPairing,

	NetmapCreated: KindNetmap, NetmapDeleted: KindNetmap,

	VMCreated: KindVM, DiskProvisioned: KindVM, ProtectionEnableStarted: KindVM,
	ProtectionEnableFailed: KindVM, InitialReplicationStarted: KindVM,
	InitialReplicationProgress: KindVM, InitialReplicationCompleted: KindVM,
	ProtectionDisableStarted: KindVM, ProtectionDisabled: KindVM, ReplicationPaused: KindVM,
	ReplicationResumed: KindVM, ResyncRequired: KindVM, ResyncStarted: KindVM,
	ResyncProgress: KindVM, ResyncCompleted: KindVM, RecoveryPointCreated: KindVM,
	RecoveryPointsPruned: KindVM, HealthChanged: KindVM, ReplicationError: KindVM,
	TestFailoverStarted: KindVM, TestFailoverCompleted: KindVM, TestCleanupStarted: KindVM,
	TestFailoverCleanedUp: KindVM, FailoverStarted: KindVM, SourceStopped: KindVM,
	FailoverFailed: KindVM, FailoverCompleted: KindVM, RecoveryPointChanged: KindVM,
	FailoverCommitted: KindVM, FailoverCancelled: KindVM, ReverseReplicationStarted: KindVM,
	ReverseReplicationCompleted: KindVM, DivergenceDetected: KindVM, VerificationCompleted: KindVM,

	PlanCreated: KindPlan, PlanUpdated: KindPlan, PlanDeleted: KindPlan, PlanJobStarted: KindPlan,
	PlanGroupStarted: KindPlan, PlanActionCompleted: KindPlan, PlanActionStarted: KindPlan, PlanSuspended: KindPlan,
	PlanResumed: KindPlan, PlanJobCompleted: KindPlan, PlanJobCancelled: KindPlan,

	AutomationAdded: KindAutomation, AutomationRemoved: KindAutomation, AutomationExecuted: KindAutomation,
}

// Known reports whether t is in the catalog.
func (t Type) Known() bool { _, ok := typeKinds[t]; return ok }

// Kind is the aggregate kind t belongs to ("" for an unknown type).
func (t Type) Kind() Kind { return typeKinds[t] }

// Types returns every event type of the catalog, in no particular order.
func Types() []Type {
	ts := make([]Type, 0, len(typeKinds))
	for t := range typeKinds {
		ts = append(ts, t)
	}
	return ts
}

// Duration is a time.Duration that is written in JSON as a Go duration
// string ("30s", "4h0m0s") and read from one or from integer nanoseconds.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a duration string or integer nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n int64
		if err := json.Unmarshal(b, &n); err != nil {
			return fmt.Errorf("duration: %s is neither a string nor nanoseconds", b)
		}
		*d = Duration(n)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	*d = Duration(v)
	return nil
}
