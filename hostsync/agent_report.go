package hostsync

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/siterecovery/siterecovery/events/agentproto"
)

// The agent's reports to the control plane: requests on
// sr.cmd.agent.<host>.<verb>, JSON in, JSON out, a refusal being
// {"error": {"code", "message"}}. The verbs, bodies and replies are
// package agentproto's, shared with the control plane.

// reportTimeout bounds one report request.
const reportTimeout = 5 * time.Second

// reporter sends the reports of one host. Safe for concurrent use.
type reporter struct {
	nc   *nats.Conn
	host string
}

// report sends body as sr.cmd.agent.<host>.<verb> and waits for the reply.
// A refusal is a *ReportError; no answer (no control plane) is an error
// wrapping ErrNoControlPlane.
func (r reporter) report(ctx context.Context, verb string, body any) error {
	data, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("report %s: %w", verb, err)
	}
	ctx, cancel := context.WithTimeout(ctx, reportTimeout)
	defer cancel()
	msg, err := r.nc.RequestWithContext(ctx, agentproto.ReportSubject(r.host, verb), data)
	if err != nil {
		return fmt.Errorf("report %s: %v: %w", verb, err, ErrNoControlPlane)
	}
	var rep agentproto.Reply
	if err := json.Unmarshal(msg.Data, &rep); err != nil {
		return fmt.Errorf("report %s: reply %q: %w", verb, msg.Data, ErrNoControlPlane)
	}
	if rep.Error != nil {
		return &ReportError{Verb: verb, Code: rep.Error.Code, Message: rep.Error.Message}
	}
	return nil
}
