package handlers

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
)

// TestPlanGroupVMsInParallelEachOnce: a group's VMs are issued together
// (all in progress before any agent answers), a VM that refuses is recorded
// as the group's error, and each VM gets its operation and the plan its
// outcome exactly once.
func TestPlanGroupVMsInParallelEachOnce(t *testing.T) {
	t.Parallel()
	f := mustStartPM(t, PMConfig{})
	f.buildFabric()
	var vms []string
	for i := range 5 {
		vms = append(vms, fmt.Sprintf("web%02d", i+1))
	}
	f.protectMore(vms...)
	f.ok("sr.cmd.vm.create", m{"name": "raw", "host": "hv01", "disk": []string{"1MiB"}})
	group := append([]string{"raw"}, vms...)
	f.ok("sr.cmd.plan.create", m{"name": "wide", "groups": []m{{"vms": group}}})
	f.ok("sr.cmd.plan.planned_failover", m{"plan": "wide", "command_id": "plan-wide"})
	for _, vm := range vms {
		f.waitVM(vm, "planned failover started", func(v vmView) bool { return v.State == events.PlannedFailoverInProgress })
	}
	for _, vm := range vms {
		f.servePlanned(vm)
	}
	j := f.job("plan-wide", events.JobFailed)
	require.Contains(t, strings.Join(j.Errors, "|"), "planned_failover raw: vm raw is Unprotected")

	ctx := context.Background()
	for _, vm := range vms {
		recs, err := f.log.Load(ctx, events.VMAgg(vm))
		require.NoError(t, err)
		started := 0
		for _, r := range recs {
			if r.Type() == events.FailoverStarted {
				started++
			}
		}
		require.Equal(t, 1, started, vm)
		require.Equal(t, events.FailoverCommitPending, f.vm(vm).State)
	}
	recs, err := f.log.Load(ctx, events.PlanAgg("wide"))
	require.NoError(t, err)
	done := map[string]int{}
	var ended []events.PlanJobCompletedData
	for _, r := range recs {
		switch d := r.Data.(type) {
		case events.PlanActionCompletedData:
			done[d.Target]++
		case events.PlanJobCompletedData:
			ended = append(ended, d)
		}
	}
	require.Len(t, ended, 1)
	require.Len(t, ended[0].Errors, 1, "only raw refused")
	require.Len(t, done, len(group))
	for _, vm := range group {
		require.Equal(t, 1, done[vm], vm)
	}
}
