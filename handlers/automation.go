package handlers

import (
	"context"

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

// NewAutomationHandlers returns the handlers over log; rm answers the query
// "automations" (projections.Automations does).
func NewAutomationHandlers(log events.Log, rm ReadModel, logger zerolog.Logger) *AutomationHandlers {
	return &AutomationHandlers{svc: New(log, rm, logger.With().Str("component", "automation-commands").Logger())}
}

// endpoints are the commands' and the query's, in the service's queue
// group, each handled within the service's timeout.
func (h *AutomationHandlers) endpoints() []endpoint {
	ep := func(name, subject string, fn func(context.Context, []byte) (any, error)) endpoint {
		return endpoint{name: name, subject: subject, timeout: h.svc.timeout, logger: h.svc.logger,
			handle: func(ctx context.Context, _ string, body []byte) (any, error) { return fn(ctx, body) }}
	}
	return []endpoint{
		ep("cmd_automation_add", AutomationAddSubject, func(ctx context.Context, b []byte) (any, error) { return h.Add(ctx, b) }),
		ep("cmd_automation_remove", AutomationRemoveSubject, func(ctx context.Context, b []byte) (any, error) { return h.Remove(ctx, b) }),
		ep("q_automations", AutomationsQuerySubject, func(ctx context.Context, b []byte) (any, error) {
			return h.svc.query(ctx, automationsQuery, b)
		}),
	}
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
