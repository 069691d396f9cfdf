package hostsync

import (
	"context"
	"errors"

	"github.com/rs/zerolog"
)

// The failover protocol's report verbs (sr.cmd.agent.<host>.<verb>), decided
// by handlers/report_failover*.go.
const (
	verbVMStopped         = "vm_stopped"
	verbFailoverReady     = "failover_ready"
	verbTestFailoverReady = "test_failover_ready"
	verbTestCleanupDone   = "test_cleanup_done"
	verbResyncProgress    = "resync_progress"
	verbResyncCompleted   = "resync_completed"
	verbDivergence        = "divergence"
)

// codeVerifyFailed is the error code a planned failover's recovery host
// reports when its replica differs from the source's final state.
const codeVerifyFailed = "verify_failed"

// reportHead is what every failover report carries.
type reportHead struct {
	CommandID string `json:"command_id,omitempty"`
	VM        string `json:"vm"`
	Job       string `json:"job,omitempty"`
	Epoch     uint64 `json:"epoch"`
}

type vmStoppedBody struct {
	reportHead
	FinalCycle uint64            `json:"final_cycle,omitempty"`
	Roots      map[string]string `json:"roots,omitempty"`
}

type readyDisk struct {
	Disk   string `json:"disk"`
	Image  string `json:"image"`
	NBDURL string `json:"nbd_url,omitempty"`
}

type failoverReadyBody struct {
	reportHead
	RecoveryPoint string      `json:"recovery_point"`
	Disks         []readyDisk `json:"disks"`
}

type testReadyBody struct {
	reportHead
	Disks []readyDisk `json:"disks"`
}

type resyncProgressBody struct {
	reportHead
	DoneBytes  int64 `json:"done_bytes"`
	TotalBytes int64 `json:"total_bytes"`
	SentBytes  int64 `json:"sent_bytes"`
}

type resyncCompletedBody struct {
	reportHead
	SentBytes int64 `json:"sent_bytes"`
}

type divergenceBody struct {
	reportHead
	Blocks      int64             `json:"blocks"`
	AsideImages map[string]string `json:"aside_images,omitempty"`
}

// reportNow sends a report unless the same key was sent within
// reportRetry, and says whether the control plane accepted it.
func (c *vmCtl) reportNow(ctx context.Context, key, verb string, body any) bool {
	if !c.due("report:"+key, reportRetry) {
		return false
	}
	err := c.a.rep.report(ctx, verb, body)
	if err == nil {
		return true
	}
	if ctx.Err() == nil {
		var re *ReportError
		lvl := zerolog.DebugLevel
		if errors.As(err, &re) {
			lvl = zerolog.WarnLevel
		}
		c.logger.WithLevel(lvl).Err(err).Str("verb", verb).Msg("report")
	}
	return false
}
