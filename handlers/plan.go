package handlers

import (
	"context"
	"fmt"
	"slices"

	"github.com/siterecovery/siterecovery/events"
)

// Command handlers of the recovery plans: decode and validate the request,
// load the plan and the VMs its groups name, then call the pure decide
// functions (plan_decide.go). The plan runner (plan_run.go) carries a
// started plan through.

func (s *Service) planCreate(ctx context.Context, body []byte) (Result, error) {
	var r planRequest
	meta, err := decodeCommand(body, &r, &r.common, func() error {
		if r.RecoveryPoint != "" || (r.Name != "" && r.Plan != "") {
			return fmt.Errorf("plan create takes name and groups: %w", events.ErrInvalidArgument)
		}
		return firstErr(token("name", r.planName()), validateGroups(r.Groups))
	})
	if err != nil {
		return Result{}, err
	}
	name := r.planName()
	return s.runOne(ctx, meta, events.PlanAgg(name), func(ctx context.Context, cur aggState) ([]events.Data, error) {
		st, err := s.loadPlanVMs(ctx, cur.Run.plan, r.Groups)
		if err != nil {
			return nil, err
		}
		return decidePlanCreate(st, name, r.Groups)
	})
}

// planVerb returns the handler of a plan verb other than create.
func (s *Service) planVerb(verb string) commandFunc {
	return func(ctx context.Context, body []byte) (Result, error) {
		var r planRequest
		meta, err := decodeCommand(body, &r, &r.common, func() error { return validatePlanVerb(verb, r) })
		if err != nil {
			return Result{}, err
		}
		res, err := s.runOne(ctx, meta, events.PlanAgg(r.planName()), func(ctx context.Context, cur aggState) ([]events.Data, error) {
			st, err := s.loadPlanVMs(ctx, cur.Run.plan, r.Groups)
			if err != nil {
				return nil, err
			}
			return decidePlan(st, verb, r, meta.CommandID)
		})
		if err == nil && slices.Contains(planJobOps, verb) {
			res.Job = meta.CommandID
		}
		return res, err
	}
}

func validatePlanVerb(verb string, r planRequest) error {
	if r.Name != "" && r.Plan != "" {
		return fmt.Errorf("plan %s: give plan or name, not both: %w", verb, events.ErrInvalidArgument)
	}
	if err := token("plan", r.planName()); err != nil {
		return err
	}
	if verb == planUpdate {
		return validateGroups(r.Groups)
	}
	if len(r.Groups) > 0 {
		return fmt.Errorf("plan %s takes no groups: %w", verb, events.ErrInvalidArgument)
	}
	if r.RecoveryPoint != "" && verb != planUnplannedFailover && verb != planTestFailover {
		return fmt.Errorf("plan %s takes no recovery_point: %w", verb, events.ErrInvalidArgument)
	}
	if r.RecoveryPoint != "" && r.RecoveryPoint != "latest" {
		return token("recovery_point", r.RecoveryPoint)
	}
	return nil
}

// loadPlanVMs loads the VMs groups name.
func (s *Service) loadPlanVMs(ctx context.Context, p events.Plan, groups []events.PlanGroup) (planState, error) {
	st := planState{Plan: p, VMs: map[string]events.VM{}}
	for _, g := range groups {
		for _, name := range g.VMs {
			vm, err := s.loadVM(ctx, name)
			if err != nil {
				return st, err
			}
			st.VMs[name] = vm
		}
	}
	return st, nil
}
