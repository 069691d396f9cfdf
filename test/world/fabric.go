package world

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// The two sites and their clouds.
const (
	SitePrimary   = "primary"
	SiteSecondary = "secondary"
	CloudPrimary  = "gold"
	CloudRecovery = "gold-dr"
)

// Fabric is the two-site fabric: site primary with host Source in cloud
// gold, site secondary with host Recovery in cloud gold-dr, a policy and
// the pairing gold → gold-dr under it.
type Fabric struct {
	Source, Recovery string
	// Policy is the body of sr.cmd.policy.create, its name included.
	Policy map[string]any
}

// Command is one request to the control plane: a subject and its body.
type Command struct {
	Subject string
	Body    map[string]any
}

// Commands are the fabric's commands, in the order they are sent.
func (f Fabric) Commands() []Command {
	return []Command{
		{"sr.cmd.site.register", map[string]any{"name": SitePrimary}},
		{"sr.cmd.site.register", map[string]any{"name": SiteSecondary}},
		{"sr.cmd.host.register", map[string]any{"name": f.Source, "site": SitePrimary}},
		{"sr.cmd.host.register", map[string]any{"name": f.Recovery, "site": SiteSecondary}},
		{"sr.cmd.cloud.create", map[string]any{"name": CloudPrimary, "site": SitePrimary, "hosts": []string{f.Source}}},
		{"sr.cmd.cloud.create", map[string]any{"name": CloudRecovery, "site": SiteSecondary, "hosts": []string{f.Recovery}}},
		{"sr.cmd.policy.create", f.Policy},
		{"sr.cmd.pairing.create", map[string]any{"source": CloudPrimary, "target": CloudRecovery, "policy": f.Policy["name"]}},
	}
}

// CLI is the fabric as operator commands, each the arguments after
// `siterecovery`, in the order they are given; policy holds the arguments
// of its `policy create`, the policy's name first.
func (f Fabric) CLI(policy ...string) [][]string {
	return [][]string{
		{"site", "register", SitePrimary},
		{"site", "register", SiteSecondary},
		{"host", "register", f.Source, "--site", SitePrimary},
		{"host", "register", f.Recovery, "--site", SiteSecondary},
		{"cloud", "create", CloudPrimary, "--site", SitePrimary, "--hosts", f.Source},
		{"cloud", "create", CloudRecovery, "--site", SiteSecondary, "--hosts", f.Recovery},
		append([]string{"policy", "create"}, policy...),
		{"pairing", "create", "--source", CloudPrimary, "--target", CloudRecovery, "--policy", policy[0]},
	}
}

// Build sends the fabric's commands.
func (w *World) Build(ctx context.Context, f Fabric) error {
	for _, c := range f.Commands() {
		if err := w.Command(ctx, c.Subject, c.Body); err != nil {
			return err
		}
	}
	return nil
}

// Command sends a command to the control plane and returns its refusal as
// an error; it retries while the service has no responder yet.
func (w *World) Command(ctx context.Context, subject string, body any) error {
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	msg, err := w.nc.RequestWithContext(ctx, subject, data)
	for errors.Is(err, nats.ErrNoResponders) && ctx.Err() == nil {
		// the service's subscriptions may not have reached the server yet
		time.Sleep(50 * time.Millisecond)
		msg, err = w.nc.RequestWithContext(ctx, subject, data)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", subject, err)
	}
	if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
		return fmt.Errorf("%s refused: %s: %s", subject, code, msg.Data)
	}
	return nil
}

// Request sends a command or query on nc and returns the reply's body, or
// the service's error with its code.
func Request(nc *nats.Conn, subject string, body any) ([]byte, error) {
	data, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	msg, err := nc.Request(subject, data, 30*time.Second)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", subject, err)
	}
	if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
		return nil, fmt.Errorf("%s: %s: %s", subject, code, msg.Header.Get(micro.ErrorHeader))
	}
	return msg.Data, nil
}

// Query asks the control plane's read models, as any NATS client can, and
// decodes the answer into out.
func (w *World) Query(name string, params map[string]any, out any) error {
	body, err := json.Marshal(params)
	if err != nil {
		return err
	}
	msg, err := w.nc.Request("sr.q."+name, body, 10*time.Second)
	if err != nil {
		return fmt.Errorf("query %s: %w", name, err)
	}
	if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
		return fmt.Errorf("query %s: %s: %s", name, code, msg.Header.Get(micro.ErrorHeader))
	}
	return json.Unmarshal(msg.Data, out)
}
