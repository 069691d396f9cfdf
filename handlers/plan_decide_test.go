package handlers

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
)

func TestDecidePlanStateMachine(t *testing.T) {
	vms := map[string]events.VM{"web01": fold(evCreated)}
	groups := []events.PlanGroup{{VMs: []string{"web01"}}}
	evs, err := decidePlanCreate(planState{VMs: vms}, "shop", groups)
	require.NoError(t, err)
	var p events.Plan
	p.Apply(events.Record{Seq: 1, Data: evs[0]})

	_, err = decidePlanCreate(planState{Plan: p, VMs: vms}, "shop", groups)
	require.ErrorIs(t, err, events.ErrAlreadyExists)
	_, err = decidePlanCreate(planState{VMs: map[string]events.VM{}}, "shop", groups)
	require.ErrorIs(t, err, events.ErrNotFound)

	r := planRequest{Plan: "shop"}
	for _, verb := range []string{planResume, planCancel} {
		_, err = decidePlan(planState{Plan: p}, verb, r, "job1")
		require.ErrorIs(t, err, events.ErrInvalidState, verb)
		require.Contains(t, err.Error(), "Idle")
	}
	evs, err = decidePlan(planState{Plan: p}, planPlannedFailover, r, "job1")
	require.NoError(t, err)
	require.Equal(t, events.PlanJobStartedData{Operation: planPlannedFailover, Job: "job1"}, evs[0])
	p.Apply(events.Record{Seq: 2, Data: evs[0]})

	_, err = decidePlan(planState{Plan: p}, planDelete, r, "job2")
	require.ErrorIs(t, err, events.ErrInvalidState)
	require.Contains(t, err.Error(), "allowed: cancel")
	p.Apply(events.Record{Seq: 3, Data: events.PlanSuspendedData{Job: "job1", Text: "check DNS"}})
	evs, err = decidePlan(planState{Plan: p}, planResume, r, "job3")
	require.NoError(t, err)
	require.Equal(t, events.PlanResumedData{Job: "job1"}, evs[0])
	evs, err = decidePlan(planState{Plan: p}, planCancel, r, "job4")
	require.NoError(t, err)
	require.Equal(t, events.PlanJobCancelledData{Job: "job1"}, evs[0])

	require.ErrorIs(t, validateGroups(nil), events.ErrInvalidArgument)
	require.ErrorIs(t, validateGroups([]events.PlanGroup{{VMs: []string{"a"}}, {VMs: []string{"a"}}}), events.ErrInvalidArgument)
	require.True(t, strings.Contains(planCheck(p, planDelete).Error(), "plan shop"))
}
