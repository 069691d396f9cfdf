package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// Envelope is the JSON form of one event, the payload of its NATS message.
type Envelope struct {
	Type          Type            `json:"type"`
	Version       int             `json:"version"`
	At            time.Time       `json:"at"`
	CommandID     string          `json:"command_id"`
	CorrelationID string          `json:"correlation_id,omitempty"`
	Actor         string          `json:"actor,omitempty"`
	Data          json.RawMessage `json:"data"`
}

// CurrentVersion is the version Encode writes for t. Every type starts at 1;
// a change of shape raises it and adds a case to upcast.
func CurrentVersion(t Type) int {
	switch t {
	default:
		return 1
	}
}

// Encode returns the envelope JSON of d with meta.
func Encode(meta Meta, d Data) ([]byte, error) {
	if d == nil || !d.EventType().Known() {
		return nil, fmt.Errorf("encode: %w", ErrUnknownType)
	}
	raw, err := json.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", d.EventType(), err)
	}
	at := meta.At
	if at.IsZero() {
		at = time.Now()
	}
	return json.Marshal(Envelope{
		Type:          d.EventType(),
		Version:       CurrentVersion(d.EventType()),
		At:            at.UTC(),
		CommandID:     meta.CommandID,
		CorrelationID: meta.CorrelationID,
		Actor:         meta.Actor,
		Data:          raw,
	})
}

// Decode parses an envelope, upcasts older versions and decodes the typed
// data. Errors match ErrDecode, ErrUnknownType or ErrUnknownVersion.
func Decode(payload []byte) (Meta, Data, error) {
	var env Envelope
	if err := json.Unmarshal(payload, &env); err != nil {
		return Meta{}, nil, fmt.Errorf("envelope: %v: %w", err, ErrDecode)
	}
	if !env.Type.Known() {
		return Meta{}, nil, fmt.Errorf("type %q: %w", env.Type, ErrUnknownType)
	}
	if env.Version < 1 || env.Version > CurrentVersion(env.Type) {
		return Meta{}, nil, fmt.Errorf("%s version %d: %w", env.Type, env.Version, ErrUnknownVersion)
	}
	if env.CommandID == "" || env.At.IsZero() {
		return Meta{}, nil, fmt.Errorf("%s: command_id and at are required: %w", env.Type, ErrDecode)
	}
	raw := bytes.TrimSpace(env.Data)
	if len(raw) == 0 || raw[0] != '{' {
		return Meta{}, nil, fmt.Errorf("%s: data must be a JSON object: %w", env.Type, ErrDecode)
	}
	raw, err := upcast(env.Type, env.Version, raw)
	if err != nil {
		return Meta{}, nil, err
	}
	d, err := decodeData(env.Type, raw)
	if err != nil {
		return Meta{}, nil, fmt.Errorf("%s data: %v: %w", env.Type, err, ErrDecode)
	}
	meta := Meta{At: env.At, CommandID: env.CommandID, CorrelationID: env.CorrelationID, Actor: env.Actor}
	return meta, d, nil
}

// upcast turns the data of an older version of t into the current shape.
// No type has changed shape yet: version 1 is current for all.
func upcast(t Type, version int, raw json.RawMessage) (json.RawMessage, error) {
	if version == CurrentVersion(t) {
		return raw, nil
	}
	return nil, fmt.Errorf("%s version %d has no upcaster: %w", t, version, ErrUnknownVersion)
}

func decodeAs[T Data](raw json.RawMessage) (Data, error) {
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	return v, nil
}

// decodeData is the explicit switch from a type name to its data struct.
func decodeData(t Type, raw json.RawMessage) (Data, error) {
	switch t {
	case VaultCreated:
		return decodeAs[VaultCreatedData](raw)
	case SiteRegistered:
		return decodeAs[SiteRegisteredData](raw)
	case SiteUnregistered:
		return decodeAs[SiteUnregisteredData](raw)
	case HostRegistered:
		return decodeAs[HostRegisteredData](raw)
	case HostUnregistered:
		return decodeAs[HostUnregisteredData](raw)
	case HostReachable:
		return decodeAs[HostReachableData](raw)
	case HostUnreachable:
		return decodeAs[HostUnreachableData](raw)
	case CloudCreated:
		return decodeAs[CloudCreatedData](raw)
	case CloudHostAdded:
		return decodeAs[CloudHostAddedData](raw)
	case CloudPaired:
		return decodeAs[CloudPairedData](raw)
	case CloudUnpaired:
		return decodeAs[CloudUnpairedData](raw)
	case HostAssigned:
		return decodeAs[HostAssignedData](raw)
	case HostUnassigned:
		return decodeAs[HostUnassignedData](raw)
	case PolicyCreated:
		return decodeAs[PolicyCreatedData](raw)
	case PolicyUpdated:
		return decodeAs[PolicyUpdatedData](raw)
	case PolicyDeleted:
		return decodeAs[PolicyDeletedData](raw)
	case PairingCreated:
		return decodeAs[PairingCreatedData](raw)
	case PairingDeleted:
		return decodeAs[PairingDeletedData](raw)
	case NetmapCreated:
		return decodeAs[NetmapCreatedData](raw)
	case NetmapDeleted:
		return decodeAs[NetmapDeletedData](raw)
	}
	return decodeVMData(t, raw)
}

func decodeVMData(t Type, raw json.RawMessage) (Data, error) {
	switch t {
	case VMCreated:
		return decodeAs[VMCreatedData](raw)
	case DiskProvisioned:
		return decodeAs[DiskProvisionedData](raw)
	case ProtectionEnableStarted:
		return decodeAs[ProtectionEnableStartedData](raw)
	case ProtectionEnableFailed:
		return decodeAs[ProtectionEnableFailedData](raw)
	case InitialReplicationStarted:
		return decodeAs[InitialReplicationStartedData](raw)
	case InitialReplicationProgress:
		return decodeAs[InitialReplicationProgressData](raw)
	case InitialReplicationCompleted:
		return decodeAs[InitialReplicationCompletedData](raw)
	case ProtectionDisableStarted:
		return decodeAs[ProtectionDisableStartedData](raw)
	case ProtectionDisabled:
		return decodeAs[ProtectionDisabledData](raw)
	case ReplicationPaused:
		return decodeAs[ReplicationPausedData](raw)
	case ReplicationResumed:
		return decodeAs[ReplicationResumedData](raw)
	case ResyncRequired:
		return decodeAs[ResyncRequiredData](raw)
	case ResyncStarted:
		return decodeAs[ResyncStartedData](raw)
	case ResyncProgress:
		return decodeAs[ResyncProgressData](raw)
	case ResyncCompleted:
		return decodeAs[ResyncCompletedData](raw)
	case RecoveryPointCreated:
		return decodeAs[RecoveryPointCreatedData](raw)
	case RecoveryPointsPruned:
		return decodeAs[RecoveryPointsPrunedData](raw)
	case HealthChanged:
		return decodeAs[HealthChangedData](raw)
	case ReplicationError:
		return decodeAs[ReplicationErrorData](raw)
	}
	return decodeFailoverData(t, raw)
}

func decodeFailoverData(t Type, raw json.RawMessage) (Data, error) {
	switch t {
	case TestFailoverStarted:
		return decodeAs[TestFailoverStartedData](raw)
	case TestFailoverCompleted:
		return decodeAs[TestFailoverCompletedData](raw)
	case TestCleanupStarted:
		return decodeAs[TestCleanupStartedData](raw)
	case TestFailoverCleanedUp:
		return decodeAs[TestFailoverCleanedUpData](raw)
	case FailoverStarted:
		return decodeAs[FailoverStartedData](raw)
	case SourceStopped:
		return decodeAs[SourceStoppedData](raw)
	case FailoverFailed:
		return decodeAs[FailoverFailedData](raw)
	case FailoverCompleted:
		return decodeAs[FailoverCompletedData](raw)
	case RecoveryPointChanged:
		return decodeAs[RecoveryPointChangedData](raw)
	case FailoverCommitted:
		return decodeAs[FailoverCommittedData](raw)
	case FailoverCancelled:
		return decodeAs[FailoverCancelledData](raw)
	case ReverseReplicationStarted:
		return decodeAs[ReverseReplicationStartedData](raw)
	case ReverseReplicationCompleted:
		return decodeAs[ReverseReplicationCompletedData](raw)
	case DivergenceDetected:
		return decodeAs[DivergenceDetectedData](raw)
	case VerificationCompleted:
		return decodeAs[VerificationCompletedData](raw)
	}
	return decodePlanData(t, raw)
}

func decodePlanData(t Type, raw json.RawMessage) (Data, error) {
	switch t {
	case PlanCreated:
		return decodeAs[PlanCreatedData](raw)
	case PlanUpdated:
		return decodeAs[PlanUpdatedData](raw)
	case PlanDeleted:
		return decodeAs[PlanDeletedData](raw)
	case PlanJobStarted:
		return decodeAs[PlanJobStartedData](raw)
	case PlanGroupStarted:
		return decodeAs[PlanGroupStartedData](raw)
	case PlanActionCompleted:
		return decodeAs[PlanActionCompletedData](raw)
	case PlanActionStarted:
		return decodeAs[PlanActionStartedData](raw)
	case PlanSuspended:
		return decodeAs[PlanSuspendedData](raw)
	case PlanResumed:
		return decodeAs[PlanResumedData](raw)
	case PlanJobCompleted:
		return decodeAs[PlanJobCompletedData](raw)
	case PlanJobCancelled:
		return decodeAs[PlanJobCancelledData](raw)
	case AutomationAdded:
		return decodeAs[AutomationAddedData](raw)
	case AutomationRemoved:
		return decodeAs[AutomationRemovedData](raw)
	case AutomationExecuted:
		return decodeAs[AutomationExecutedData](raw)
	}
	return nil, fmt.Errorf("type %q: %w", t, ErrUnknownType)
}
