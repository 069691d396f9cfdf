package handlers

import (
	"fmt"
	"slices"

	"github.com/siterecovery/siterecovery/events"
)

// Plan verbs (the command sr.cmd.plan.<verb>) besides create.
const (
	planUpdate            = "update"
	planDelete            = "delete"
	planTestFailover      = "test_failover"
	planTestCleanup       = "test_cleanup"
	planPlannedFailover   = "planned_failover"
	planUnplannedFailover = "unplanned_failover"
	planCommit            = "commit"
	planReverse           = "reverse"
	planResume            = "resume"
	planCancel            = "cancel"
)

// planJobOps start a plan job; an idle plan allows them and update, delete.
var planJobOps = []string{planTestFailover, planTestCleanup, planPlannedFailover, planUnplannedFailover, planCommit, planReverse}

// planAllowed is the plan's state machine: idle plans start jobs, running
// ones can be cancelled, suspended ones resumed or cancelled.
func planAllowed(p events.Plan) []string {
	switch {
	case p.Job == "":
		return append([]string{planUpdate, planDelete}, planJobOps...)
	case p.JobState == events.JobSuspended:
		return []string{planResume, planCancel}
	}
	return []string{planCancel}
}

func planCheck(p events.Plan, op string) error {
	allowed := planAllowed(p)
	if slices.Contains(allowed, op) {
		return nil
	}
	state := "Idle"
	if p.Job != "" {
		state = fmt.Sprintf("running %s (job %s, %s)", p.JobOperation, p.Job, p.JobState)
	}
	return &events.StateError{Aggregate: events.PlanAgg(p.Name), State: state, Operation: op, Allowed: allowed}
}

// planState is a plan and the VMs its groups name (by name).
type planState struct {
	Plan events.Plan
	VMs  map[string]events.VM
}

// validateGroups checks groups' shape: at least one group, each with VMs,
// every VM a token and in one group only.
func validateGroups(groups []events.PlanGroup) error {
	if len(groups) == 0 {
		return fmt.Errorf("plan: at least one group is required: %w", events.ErrInvalidArgument)
	}
	seen := map[string]bool{}
	for i, g := range groups {
		if len(g.VMs) == 0 {
			return fmt.Errorf("plan: group %d has no VM: %w", i+1, events.ErrInvalidArgument)
		}
		for _, vm := range g.VMs {
			if err := token("vm", vm); err != nil {
				return err
			}
			if seen[vm] {
				return fmt.Errorf("plan: vm %s is in two groups: %w", vm, events.ErrInvalidArgument)
			}
			seen[vm] = true
		}
	}
	return nil
}

func checkPlanVMs(st planState, groups []events.PlanGroup) error {
	for _, g := range groups {
		for _, name := range g.VMs {
			if vm := st.VMs[name]; !vm.Exists() {
				return notFound(events.KindVM, name)
			}
		}
	}
	return nil
}

func decidePlanCreate(st planState, name string, groups []events.PlanGroup) ([]events.Data, error) {
	if st.Plan.Exists() {
		return nil, alreadyExists(events.KindPlan, name)
	}
	if err := checkPlanVMs(st, groups); err != nil {
		return nil, err
	}
	return one(events.PlanCreatedData{Name: name, Groups: groups})
}

// decidePlan decides every plan verb but create; job is the id of a job the
// verb would start.
func decidePlan(st planState, verb string, r planRequest, job string) ([]events.Data, error) {
	p := st.Plan
	if !p.Exists() {
		return nil, notFound(events.KindPlan, r.planName())
	}
	if err := planCheck(p, verb); err != nil {
		return nil, err
	}
	switch verb {
	case planUpdate:
		if err := checkPlanVMs(st, r.Groups); err != nil {
			return nil, err
		}
		return one(events.PlanUpdatedData{Name: p.Name, Groups: r.Groups})
	case planDelete:
		return one(events.PlanDeletedData{Name: p.Name})
	case planResume:
		return one(events.PlanResumedData{Job: p.Job})
	case planCancel:
		return one(events.PlanJobCancelledData{Job: p.Job})
	}
	return one(events.PlanJobStartedData{Operation: verb, Job: job, RecoveryPoint: r.RecoveryPoint})
}
