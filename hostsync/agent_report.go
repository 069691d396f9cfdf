package hostsync

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/siterecovery/siterecovery/events/agentproto"
)

// The agent's reports to the control plane: requests on
// sr.cmd.agent.<host>.<verb>, JSON in, JSON out, a refusal being
// {"error": {"code", "message"}}. The verbs, bodies and replies are
// package agentproto's, shared with the control plane.

// ControlPlane answers the agent's reports: request/reply on
// sr.cmd.agent.<host>.<verb> (natsbus implements it with core NATS). Safe
// for concurrent use.
type ControlPlane interface {
	// Request sends data on subject and returns the reply's data, waiting
	// until ctx ends. No control plane serving subject, or no reply before
	// ctx ends, is an error; a refusal is a reply like any other.
	Request(ctx context.Context, subject string, data []byte) ([]byte, error)
}

// reportTimeout bounds one report request.
const reportTimeout = 5 * time.Second

// reporter sends the reports of one host. Safe for concurrent use.
type reporter struct {
	cp   ControlPlane
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
	subject := agentproto.ReportSubject(r.host, verb)
	reply, err := r.cp.Request(ctx, subject, data)
	if err != nil {
		return fmt.Errorf("report %s: %v: %w", verb, err, ErrNoControlPlane)
	}
	var rep agentproto.Reply
	if err := json.Unmarshal(reply, &rep); err != nil {
		return fmt.Errorf("report %s: reply %q: %w", verb, reply, ErrNoControlPlane)
	}
	if rep.Error != nil {
		return &ReportError{Verb: verb, Code: rep.Error.Code, Message: rep.Error.Message}
	}
	return nil
}
