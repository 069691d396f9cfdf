package hostsync

import (
	"errors"
	"fmt"
)

// Sentinel errors of the agent (following the log, shipping, receiving).
// Match them with errors.Is.
var (
	// ErrNoControlPlane means a report got no answer: no control plane
	// is serving sr.cmd.agent.<host>.*, or it did not answer in time. The
	// agent reports again later.
	ErrNoControlPlane = errors.New("control plane did not answer")

	// ErrAgentConfig means the agent's configuration is unusable.
	ErrAgentConfig = errors.New("bad agent configuration")

	// ErrAgentClosed means the agent was closed.
	ErrAgentClosed = errors.New("agent closed")
)

// ReportError is a report the control plane refused, with its reply code
// (invalid_argument, unauthorized, invalid_state, ...).
type ReportError struct {
	Verb    string
	Code    string
	Message string
}

func (e *ReportError) Error() string {
	return fmt.Sprintf("report %s refused: %s: %s", e.Verb, e.Code, e.Message)
}
