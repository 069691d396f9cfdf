package agentproto

import (
	"time"

	"github.com/siterecovery/siterecovery/events"
)

// MaxVerifyWait bounds how long a source agent waits for the replica to
// reach the source's latest closed cycle before it compares.
const MaxVerifyWait = 5 * time.Minute

// VerifyRequest asks a source agent, on VerifySubject, to compare both
// sides of a VM now.
type VerifyRequest struct {
	// WaitMS bounds how long the agent waits for the replica to reach the
	// source's latest closed cycle (see VerifyWait).
	WaitMS int64 `json:"wait_ms,omitempty"`
}

// VerifyReply is the outcome: the point compared, whether the replica
// equals the source there, and the differing ranges; or an Error
// (unavailable: try again later; internal).
type VerifyReply struct {
	VM        string             `json:"vm"`
	Epoch     uint64             `json:"epoch,omitempty"`
	Cycle     uint64             `json:"cycle,omitempty"`
	Point     string             `json:"point,omitempty"`
	Equal     bool               `json:"equal"`
	Differing []events.DiskRange `json:"differing"`
	Error     *Error             `json:"error,omitempty"`
}

// VerifyWait is how long a source agent waits for the replica before it
// compares, for a VM under settings s: waitMS when it is set, else two copy
// intervals plus 10 s; at most MaxVerifyWait. The control plane waits for
// the answer that long plus a margin.
func VerifyWait(s events.PolicySettings, waitMS int64) time.Duration {
	if waitMS > 0 {
		return min(time.Duration(waitMS)*time.Millisecond, MaxVerifyWait)
	}
	return min(2*s.CopyInterval()+10*time.Second, MaxVerifyWait)
}
