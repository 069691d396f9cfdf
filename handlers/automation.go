package handlers

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"

	"github.com/siterecovery/siterecovery/events"
)

// Subjects of the automation rules' commands and query.
const (
	AutomationAddSubject    = CommandPrefix + "automation.add"
	AutomationRemoveSubject = CommandPrefix + "automation.remove"
	AutomationsQuerySubject = QueryPrefix + "automations"
)

// automationsQuery is the read model's name of the query.
const automationsQuery = "automations"

// AutomationHandlers serve the automation rules: sr.cmd.automation.add and
// sr.cmd.automation.remove, decided against the rule's aggregate
// (automation/<name>) and appended with optimistic concurrency and the
// command's id (a retried command appends once), and sr.q.automations,
// answered by rm. Add them to a Service with Extend. Safe for concurrent use.
type AutomationHandlers struct {
	svc *Service
}

var _ Extension = (*AutomationHandlers)(nil)

// NewAutomationHandlers returns the handlers over log; rm answers the query
// "automations" (projections.Automations does).
func NewAutomationHandlers(log events.Log, rm ReadModel, logger zerolog.Logger) *AutomationHandlers {
	return &AutomationHandlers{svc: New(log, rm, logger.With().Str("component", "automation-commands").Logger())}
}

// AddEndpoints adds the commands' and the query's endpoints to svc, in the
// service's queue group.
func (h *AutomationHandlers) AddEndpoints(ctx context.Context, svc micro.Service) error {
	eps := []struct {
		name, subject string
		fn            func(context.Context, []byte) (any, error)
	}{
		{"cmd_automation_add", AutomationAddSubject, func(ctx context.Context, b []byte) (any, error) { return h.Add(ctx, b) }},
		{"cmd_automation_remove", AutomationRemoveSubject, func(ctx context.Context, b []byte) (any, error) { return h.Remove(ctx, b) }},
		{"q_automations", AutomationsQuerySubject, func(ctx context.Context, b []byte) (any, error) {
			return h.svc.query(ctx, automationsQuery, b)
		}},
	}
	for _, ep := range eps {
		if err := svc.AddEndpoint(ep.name, h.handler(ctx, ep.subject, ep.fn), micro.WithEndpointSubject(ep.subject)); err != nil {
			return fmt.Errorf("handlers: endpoint %s: %w", ep.subject, err)
		}
	}
	return nil
}

func (h *AutomationHandlers) handler(ctx context.Context, subject string, fn func(context.Context, []byte) (any, error)) micro.Handler {
	return micro.ContextHandler(ctx, func(ctx context.Context, req micro.Request) {
		ctx, cancel := context.WithTimeout(ctx, h.svc.timeout)
		defer cancel()
		res, err := fn(ctx, req.Data())
		h.svc.reply(req, subject, res, err)
	})
}

// Add handles sr.cmd.automation.add: {name, on, vm, exec, timeout}. Errors
// match events.ErrInvalidArgument (a bad name, an unknown or automation
// event type, an empty exec, a timeout not within (0, 1h]) or
// events.ErrAlreadyExists; nothing is appended then.
func (h *AutomationHandlers) Add(ctx context.Context, body []byte) (Result, error) {
	var r automationAddRequest
	meta, err := decodeCommand(body, &r, &r.common, func() error { return r.validate() })
	if err != nil {
		return Result{}, err
	}
	return h.svc.runOne(ctx, meta, automationAgg(r.Name), func(_ context.Context, cur aggState) ([]events.Data, error) {
		return decideAutomationAdd(cur.Automation, r)
	})
}

// Remove handles sr.cmd.automation.remove: {name}. Errors match
// events.ErrInvalidArgument or events.ErrNotFound; nothing is appended then.
func (h *AutomationHandlers) Remove(ctx context.Context, body []byte) (Result, error) {
	var r nameRequest
	meta, err := decodeCommand(body, &r, &r.common, func() error { return token("name", r.Name) })
	if err != nil {
		return Result{}, err
	}
	return h.svc.runOne(ctx, meta, automationAgg(r.Name), func(_ context.Context, cur aggState) ([]events.Data, error) {
		return decideAutomationRemove(cur.Automation, r.Name)
	})
}

func automationAgg(name string) events.Aggregate {
	return events.Aggregate{Kind: events.KindAutomation, ID: name}
}
