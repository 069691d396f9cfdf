package hostsync

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// The agent's reports to the control plane: requests on
// sr.cmd.agent.<host>.<verb>, JSON in, JSON out, a refusal being
// {"error": {"code", "message"}} (DESIGN.md section 4). The bodies are the
// wire contract with the handlers package (handlers/agent_decide.go), which
// this package does not import.

// The report verbs.
const (
	verbHeartbeat       = "heartbeat"
	verbDiskProvisioned = "disk_provisioned"
	verbIRProgress      = "ir_progress"
	verbIRCompleted     = "ir_completed"
	verbRecoveryPoint   = "recovery_point"
	verbPointsPruned    = "points_pruned"
	verbError           = "error"
	verbDisabled        = "protection_disabled"
)

// Error codes the agent reports with verbError.
const (
	CodeResyncRequired = "resync_required"
	CodeBadBatch       = "bad_batch"
	CodeStaleEpoch     = "stale_epoch"
	CodeCycleGap       = "cycle_gap"
	CodeApplyFailed    = "apply_failed"
	CodeShipFailed     = "ship_failed"
	CodeDiskFailed     = "disk_failed"
)

type heartbeatBody struct {
	Agent string    `json:"agent,omitempty"`
	Time  time.Time `json:"time"`
}

type diskProvisionedBody struct {
	CommandID string `json:"command_id,omitempty"`
	VM        string `json:"vm"`
	Disk      string `json:"disk"`
	Role      string `json:"role"`
	Image     string `json:"image"`
	NBDURL    string `json:"nbd_url,omitempty"`
	Epoch     uint64 `json:"epoch"`
}

type irProgressBody struct {
	CommandID  string `json:"command_id,omitempty"`
	VM         string `json:"vm"`
	DoneBytes  int64  `json:"done_bytes"`
	TotalBytes int64  `json:"total_bytes"`
}

type irCompletedBody struct {
	CommandID string `json:"command_id,omitempty"`
	VM        string `json:"vm"`
	SentBytes int64  `json:"sent_bytes"`
}

type recoveryPointBody struct {
	CommandID     string            `json:"command_id,omitempty"`
	VM            string            `json:"vm"`
	ID            string            `json:"id"`
	Time          time.Time         `json:"time"`
	AppConsistent bool              `json:"app_consistent"`
	Cycle         uint64            `json:"cycle"`
	Epoch         uint64            `json:"epoch"`
	Roots         map[string]string `json:"roots,omitempty"`
	Bytes         int64             `json:"bytes"`
}

type pointsPrunedBody struct {
	CommandID string   `json:"command_id,omitempty"`
	VM        string   `json:"vm"`
	IDs       []string `json:"ids"`
}

type errorBody struct {
	CommandID string `json:"command_id,omitempty"`
	VM        string `json:"vm"`
	Code      string `json:"code"`
	Message   string `json:"message"`
}

type disabledBody struct {
	CommandID      string `json:"command_id,omitempty"`
	VM             string `json:"vm"`
	ReplicaDeleted bool   `json:"replica_deleted"`
}

// replyBody is what the control plane answers.
type replyBody struct {
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

// reportTimeout bounds one report request.
const reportTimeout = 5 * time.Second

// reporter sends the reports of one host. Safe for concurrent use.
type reporter struct {
	nc   *nats.Conn
	host string
	hook func(ctx context.Context, verb string) error // AgentConfig.ReportHook
}

// report sends body as sr.cmd.agent.<host>.<verb> and waits for the reply.
// A refusal is a *ReportError; no answer (no control plane) is an error
// wrapping ErrNoControlPlane.
func (r reporter) report(ctx context.Context, verb string, body any) error {
	data, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("report %s: %w", verb, err)
	}
	if r.hook != nil {
		if err := r.hook(ctx, verb); err != nil {
			return fmt.Errorf("report %s: %v: %w", verb, err, ErrNoControlPlane)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, reportTimeout)
	defer cancel()
	subject := "sr.cmd.agent." + r.host + "." + verb
	msg, err := r.nc.RequestWithContext(ctx, subject, data)
	if err != nil {
		return fmt.Errorf("report %s: %v: %w", verb, err, ErrNoControlPlane)
	}
	var rep replyBody
	if err := json.Unmarshal(msg.Data, &rep); err != nil {
		return fmt.Errorf("report %s: reply %q: %w", verb, msg.Data, ErrNoControlPlane)
	}
	if rep.Error != nil {
		return &ReportError{Verb: verb, Code: rep.Error.Code, Message: rep.Error.Message}
	}
	return nil
}
