package handlers

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/agentproto"
)

// protectMore creates and protects more VMs on hv01.
func (f *pmFixture) protectMore(vms ...string) {
	f.t.Helper()
	for _, vm := range vms {
		if vm != "web01" {
			f.ok("sr.cmd.vm.create", m{"name": vm, "host": "hv01", "disk": []string{"1MiB"}})
		}
		f.protect(vm)
	}
}

// servePlanned waits for the planned failover of vm and plays its agents.
func (f *pmFixture) servePlanned(vm string) {
	f.t.Helper()
	v := f.waitVM(vm, "planned failover started", func(v vmView) bool { return v.State == events.PlannedFailoverInProgress })
	f.agent("hv01", agentproto.VerbVMStopped, m{"vm": vm, "epoch": v.Epoch, "final_cycle": 2})
	f.agent("hv11", agentproto.VerbFailoverReady, m{"vm": vm, "epoch": v.Epoch + 1, "recovery_point": "rp-final", "disks": disks(vm, "hv11", "")})
}

func (f *pmFixture) plan(name string) events.Plan {
	f.t.Helper()
	recs, err := f.log.Load(context.Background(), events.PlanAgg(name))
	require.NoError(f.t, err)
	return foldPlan(recs)
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	return strings.Fields(string(raw))
}

func TestPlanPlannedFailoverGroupsScriptsManualAction(t *testing.T) {
	t.Parallel()
	f := mustStartPM(t, PMConfig{})
	f.buildFabric()
	f.protectMore("web01", "web02", "db01")
	out := filepath.Join(t.TempDir(), "trace")
	script := `echo "$SR_PLAN:$SR_GROUP:$SR_OPERATION:$SR_ACTION" >> ` + out
	f.ok("sr.cmd.plan.create", m{"name": "shop", "groups": []m{
		{"vms": []string{"web01", "web02"}, "pre_script": script, "manual_action": "check the load balancer"},
		{"vms": []string{"db01"}, "post_script": script},
	}})
	res := f.ok("sr.cmd.plan.planned_failover", m{"plan": "shop", "command_id": "plan-pf"})
	require.Equal(t, "plan-pf", res.Job)

	// Group 1 after its pre script, its VMs in parallel; db01 waits.
	f.servePlanned("web02")
	f.servePlanned("web01")
	require.Equal(t, []string{"shop:1:planned_failover:pre_script"}, readLines(t, out))
	require.Eventually(t, func() bool { return f.plan("shop").JobState == events.JobSuspended }, 10*time.Second, 5*time.Millisecond)
	j := f.job("plan-pf", events.JobSuspended)
	require.Equal(t, "PlanPlannedFailover", j.Operation)
	require.Equal(t, events.Protected, f.vm("db01").State, "group 2 waits for the manual action")

	r := f.request("sr.cmd.plan.planned_failover", m{"plan": "shop"})
	require.Equal(t, CodeInvalidState, r.Code, r.Message)
	f.ok("sr.cmd.plan.resume", m{"plan": "shop"})
	f.servePlanned("db01")
	j = f.job("plan-pf", events.JobSucceeded)
	require.Empty(t, j.Errors)
	require.Equal(t, []string{"shop:1:planned_failover:pre_script", "shop:2:planned_failover:post_script"}, readLines(t, out))
	steps := strings.Join(stepNames(j), " ")
	require.Contains(t, steps, "plan_job_started plan_group_started plan_action_started plan_action_completed failover_started")
	require.Contains(t, steps, "plan_suspended plan_resumed plan_group_started failover_started")
	require.True(t, strings.HasSuffix(steps, "plan_action_started plan_action_completed plan_job_completed"), steps)
	for _, vm := range []string{"web01", "web02", "db01"} {
		require.Equal(t, events.FailoverCommitPending, f.vm(vm).State, vm)
	}

	// A plan commit: every VM commits, then reverses by itself.
	f.ok("sr.cmd.plan.commit", m{"plan": "shop", "command_id": "plan-commit"})
	f.job("plan-commit", events.JobSuspended)
	f.ok("sr.cmd.plan.resume", m{"plan": "shop"})
	f.job("plan-commit", events.JobSucceeded)
	for _, vm := range []string{"web01", "web02", "db01"} {
		f.waitVM(vm, "reverse", func(v vmView) bool { return v.State == events.ReverseReplicationState })
	}
}

func TestPlanFailingScriptStopsPlannedGoesOnUnplanned(t *testing.T) {
	t.Parallel()
	f := mustStartPM(t, PMConfig{})
	f.buildFabric()
	f.protectMore("web01", "web02")
	f.ok("sr.cmd.plan.create", m{"name": "stop", "groups": []m{
		{"vms": []string{"web01"}, "pre_script": "echo no disk >&2; exit 3"},
		{"vms": []string{"web02"}},
	}})
	f.ok("sr.cmd.plan.planned_failover", m{"plan": "stop", "command_id": "plan-stop"})
	j := f.job("plan-stop", events.JobFailed)
	require.NotEmpty(t, j.Errors)
	require.Contains(t, j.Errors[0], "exit status 3: no disk")
	require.Equal(t, events.Protected, f.vm("web01").State, "a planned plan stops at the first error")
	require.Equal(t, events.Protected, f.vm("web02").State)

	res := f.ok("sr.cmd.plan.unplanned_failover", m{"plan": "stop", "command_id": "plan-go"})
	for _, vm := range []string{"web01", "web02"} {
		v := f.waitVM(vm, "unplanned failover", func(v vmView) bool { return v.State == events.UnplannedFailoverInProgress })
		require.Equal(t, "rp-"+vm+"-1", v.Failover.Data.RecoveryPoint, "the latest point")
		f.agent("hv11", agentproto.VerbFailoverReady, m{"vm": vm, "epoch": 2, "disks": disks(vm, "hv11", "")})
	}
	j = f.job(res.Job, events.JobFailed)
	require.Contains(t, strings.Join(j.Errors, "|"), "group 1 pre_script")
	require.Equal(t, events.FailoverCommitPending, f.vm("web02").State, "an unplanned plan goes on")
}

func TestPlanVMFailureAndTimeout(t *testing.T) {
	t.Parallel()
	f := mustStartPM(t, PMConfig{FailoverTimeout: 1500 * time.Millisecond, ScriptTimeout: 200 * time.Millisecond})
	f.buildFabric()
	f.protectMore("web01", "web02")
	f.ok("sr.cmd.plan.create", m{"name": "slow", "groups": []m{
		{"vms": []string{"web01"}, "post_script": "sleep 30"},
		{"vms": []string{"web02"}},
	}})
	f.ok("sr.cmd.plan.unplanned_failover", m{"plan": "slow", "command_id": "plan-slow"})
	// web01 never comes up: its failover times out; the script too; web02 goes on.
	v := f.waitVM("web02", "unplanned failover", func(v vmView) bool { return v.State == events.UnplannedFailoverInProgress })
	f.agent("hv11", agentproto.VerbFailoverReady, m{"vm": "web02", "epoch": v.Epoch + 1, "disks": disks("web02", "hv11", "")})
	j := f.job("plan-slow", events.JobFailed)
	all := strings.Join(j.Errors, "|")
	require.Contains(t, all, "unplanned failover failed at ready: timeout")
	require.Contains(t, all, "script timed out after 200ms")
	require.Equal(t, events.UnplannedFailoverFailed, f.vm("web01").State)
}

func TestPlanCancelAndTestFailover(t *testing.T) {
	t.Parallel()
	f := mustStartPM(t, PMConfig{})
	f.buildFabric()
	f.protectMore("web01")
	f.ok("sr.cmd.plan.create", m{"name": "t", "groups": []m{{"vms": []string{"web01"}, "manual_action": "look"}}})
	f.ok("sr.cmd.plan.test_failover", m{"plan": "t", "command_id": "plan-tf"})
	f.waitVM("web01", "test", func(v vmView) bool { return v.TestState == events.TestInProgress })
	f.agent("hv11", agentproto.VerbTestFailoverReady, m{"vm": "web01", "disks": disks("web01", "hv11", "-test")})
	f.job("plan-tf", events.JobSuspended)
	f.ok("sr.cmd.plan.cancel", m{"plan": "t"})
	f.job("plan-tf", events.JobCancelled)
	f.ok("sr.cmd.plan.test_cleanup", m{"plan": "t", "command_id": "plan-tc"})
	f.waitVM("web01", "cleaning", func(v vmView) bool { return v.TestState == events.TestCleaningUp })
	f.agent("hv11", agentproto.VerbTestCleanupDone, m{"vm": "web01"})
	f.job("plan-tc", events.JobSuspended)
	f.ok("sr.cmd.plan.resume", m{"plan": "t"})
	f.job("plan-tc", events.JobSucceeded)
}

func TestTwoProcessManagersReactOnce(t *testing.T) {
	t.Parallel()
	f := mustStartPM(t, PMConfig{FailoverTimeout: 1500 * time.Millisecond})
	f.startPM(f.cfg)
	f.startPM(PMConfig{Dir: t.TempDir(), FailoverTimeout: 1500 * time.Millisecond})
	f.buildFabric()
	f.protectMore("web01", "web02")
	out := filepath.Join(t.TempDir(), "runs")
	f.ok("sr.cmd.plan.create", m{"name": "twice", "groups": []m{
		{"vms": []string{"web01"}, "pre_script": "echo run >> " + out},
		{"vms": []string{"web02"}},
	}})
	f.ok("sr.cmd.plan.planned_failover", m{"plan": "twice", "command_id": "plan-2"})
	f.servePlanned("web01")
	// web02 times out.
	f.job("plan-2", events.JobFailed)
	require.Equal(t, []string{"run"}, readLines(t, out), "the script ran once")
	require.Equal(t, events.PlannedFailoverFailed, f.vm("web02").State)
	require.Equal(t, 1, f.count(events.VMAgg("web02"), events.FailoverFailed))
	for _, typ := range []events.Type{events.PlanGroupStarted, events.PlanActionStarted, events.PlanJobCompleted} {
		want := 2
		if typ != events.PlanGroupStarted {
			want = 1
		}
		require.Equal(t, want, f.count(events.PlanAgg("twice"), typ), typ)
	}
	require.Equal(t, 3, f.count(events.PlanAgg("twice"), events.PlanActionCompleted))
	f.ok("sr.cmd.vm.commit", m{"vm": "web01"})
	f.waitVM("web01", "reverse", func(v vmView) bool { return v.State == events.ReverseReplicationState })
	f.point("web01", "hv01", "rp-back", 1, 2)
	f.waitVM("web01", "protected", func(v vmView) bool { return v.State == events.Protected })
	require.Equal(t, 1, f.count(events.VMAgg("web01"), events.ReverseReplicationStarted))
	require.Equal(t, 1, f.count(events.VMAgg("web01"), events.ReverseReplicationCompleted))
}

func TestPlanScriptOfALostControlPlaneFails(t *testing.T) {
	t.Parallel()
	f := mustStartPM(t, PMConfig{})
	f.buildFabric()
	f.protectMore("web01")
	require.NoError(t, f.pm.Close(context.Background()))
	f.ok("sr.cmd.plan.create", m{"name": "lost", "groups": []m{{"vms": []string{"web01"}, "pre_script": "true"}}})
	res := f.ok("sr.cmd.plan.planned_failover", m{"plan": "lost", "command_id": "plan-lost"})
	// Another control plane claimed the script, then died before its result.
	ctx := context.Background()
	agg := events.PlanAgg("lost")
	meta := func(cmd string) events.Meta {
		return events.Meta{At: time.Now().UTC(), CommandID: cmd, CorrelationID: "plan-lost", Actor: pmActor}
	}
	_, err := f.log.Append(ctx, agg, res.Seq, meta(pmCommand(res.Seq, "g0")), events.PlanGroupStartedData{Job: "plan-lost"})
	require.NoError(t, err)
	_, err = f.log.Append(ctx, agg, res.Seq+1, meta(pmCommand(res.Seq, "pre_script0")),
		events.PlanActionStartedData{Job: "plan-lost", Action: ActionPreScript, Timeout: events.Duration(100 * time.Millisecond)})
	require.NoError(t, err)

	f.startPM(PMConfig{})
	j := f.job("plan-lost", events.JobFailed)
	require.Contains(t, j.Errors[0], "the control plane running the script was lost")
	require.Equal(t, events.Protected, f.vm("web01").State)
}
