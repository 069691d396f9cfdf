package handlers

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/siterecovery/siterecovery/events"
)

// Requests are JSON objects whose fields are the CLI's flag names in
// snake_case. Every request may carry command_id (generated when absent) and
// actor. Unknown fields are refused.

// common is embedded in every request.
type common struct {
	CommandID string `json:"command_id,omitempty"`
	Actor     string `json:"actor,omitempty"`
}

type nameRequest struct {
	common
	Name string `json:"name"`
}

type hostRequest struct {
	common
	Name string `json:"name"`
	Site string `json:"site"`
}

type cloudRequest struct {
	common
	Name  string   `json:"name"`
	Cloud string   `json:"cloud,omitempty"`
	Site  string   `json:"site,omitempty"`
	Hosts []string `json:"hosts,omitempty"`
	Host  string   `json:"host,omitempty"`
}

// cloudName is the cloud a request names, as "name" or "cloud".
func (r cloudRequest) cloudName() string {
	if r.Name != "" {
		return r.Name
	}
	return r.Cloud
}

type policyRequest struct {
	common
	Name                   string           `json:"name"`
	CopyFrequency          *events.Duration `json:"copy_frequency,omitempty"`
	Retention              *events.Duration `json:"retention,omitempty"`
	AppConsistentEvery     *events.Duration `json:"app_consistent_every,omitempty"`
	Compression            *bool            `json:"compression,omitempty"`
	RPOThreshold           *events.Duration `json:"rpo_threshold,omitempty"`
	StartAt                *time.Time       `json:"start_at,omitempty"`
	DeleteReplicaOnDisable *bool            `json:"delete_replica_on_disable,omitempty"`
	QuiesceCommand         *string          `json:"quiesce_command,omitempty"`
	ThawCommand            *string          `json:"thaw_command,omitempty"`
}

type pairingRequest struct {
	common
	Name   string `json:"name,omitempty"`
	Source string `json:"source"`
	Target string `json:"target"`
	Policy string `json:"policy"`
}

type netmapRequest struct {
	common
	Name          string `json:"name"`
	SourceNetwork string `json:"source_network"`
	TargetNetwork string `json:"target_network"`
}

type vmCreateRequest struct {
	common
	Name     string            `json:"name"`
	Host     string            `json:"host"`
	Disk     []string          `json:"disk,omitempty"`
	Disks    []events.DiskSpec `json:"disks,omitempty"`
	Networks []string          `json:"networks,omitempty"`
}

type vmRequest struct {
	common
	VM             string `json:"vm"`
	RecoveryPoint  string `json:"recovery_point,omitempty"`
	ShutdownSource bool   `json:"shutdown_source,omitempty"`
	Network        string `json:"network,omitempty"`
}

type planRequest struct {
	common
	Name          string             `json:"name,omitempty"`
	Plan          string             `json:"plan,omitempty"`
	Groups        []events.PlanGroup `json:"groups,omitempty"`
	RecoveryPoint string             `json:"recovery_point,omitempty"`
}

// planName is the plan a request names, as "plan" or "name".
func (r planRequest) planName() string {
	if r.Plan != "" {
		return r.Plan
	}
	return r.Name
}

// decodeRequest decodes a JSON object into v, refusing unknown fields and
// trailing data. An empty body is an empty object.
func decodeRequest(data []byte, v any) error {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		data = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("request: %v: %w", err, events.ErrInvalidArgument)
	}
	if dec.More() {
		return fmt.Errorf("request: trailing data after the JSON object: %w", events.ErrInvalidArgument)
	}
	return nil
}

// token validates a required subject token field.
func token(field, v string) error {
	if err := events.ValidateToken(field, v); err != nil {
		return fmt.Errorf("%w: %w", events.ErrInvalidArgument, err)
	}
	return nil
}

// optionalToken validates a field that may be empty.
func optionalToken(field, v string) error {
	if v == "" {
		return nil
	}
	return token(field, v)
}

// sizeUnits are the suffixes ParseSize accepts, longest first.
var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
	{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3},
	{"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1},
}

// ParseSize parses a disk size such as "4GiB", "512MiB", "10G" or "1048576"
// (bytes). The size must be a positive multiple of 512 bytes.
func ParseSize(s string) (int64, error) {
	num, mult := strings.TrimSpace(s), int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("disk size %q: want a positive size such as 4GiB: %w", s, events.ErrInvalidArgument)
	}
	if size := n * mult; size%512 == 0 {
		return size, nil
	}
	return 0, fmt.Errorf("disk size %q is not a multiple of 512 bytes: %w", s, events.ErrInvalidArgument)
}
