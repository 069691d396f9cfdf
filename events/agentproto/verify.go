package agentproto

import "github.com/siterecovery/siterecovery/events"

// VerifyRequest asks a source agent, on VerifySubject, to compare both
// sides of a VM now.
type VerifyRequest struct {
	// WaitMS bounds how long the agent waits for the replica to reach the
	// source's latest closed cycle (default: two copy intervals plus 10 s).
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
