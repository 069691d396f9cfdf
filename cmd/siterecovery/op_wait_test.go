package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
)

// appendAs appends evs to vm as an agent's report of job would.
func (f *opFixture) appendAs(vm, job string, evs ...events.Data) {
	f.t.Helper()
	ctx := context.Background()
	recs, err := f.log.Load(ctx, events.VMAgg(vm))
	require.NoError(f.t, err)
	_, err = f.log.Append(ctx, events.VMAgg(vm), recs[len(recs)-1].Seq,
		events.Meta{At: time.Now().UTC(), CommandID: "agent-" + job, CorrelationID: job, Actor: "agent:test"}, evs...)
	require.NoError(f.t, err)
}

// runAsync runs a command in the background and returns its outcome.
func (f *opFixture) runAsync(args ...string) <-chan [3]any {
	out := make(chan [3]any, 1)
	go func() {
		code, stdout, stderr := f.run(args...)
		out <- [3]any{code, stdout, stderr}
	}()
	return out
}

func (f *opFixture) vmState(vm string) events.ProtectionState {
	recs, err := f.log.Load(context.Background(), events.VMAgg(vm))
	require.NoError(f.t, err)
	v := events.FoldVM(recs)
	return v.State
}

func TestOperatorWait(t *testing.T) {
	f := mustStartControlPlane(t)
	f.buildFabric()

	done := f.runAsync("vm", "enable", "web01", "--command-id", "en-w", "--wait", "--wait-timeout", "20s")
	require.Eventually(t, func() bool { return f.vmState("web01") == events.EnablingProtection }, 10*time.Second, 5*time.Millisecond)
	f.appendAs("web01", "en-w", events.InitialReplicationStartedData{TotalBytes: 10}, events.InitialReplicationCompletedData{SentBytes: 10})
	res := <-done
	require.Equal(t, exitOK, res[0], res[2])
	out := res[1].(string)
	require.Contains(t, out, "protection_enable_started")
	require.Contains(t, out, "initial_replication_completed")
	require.True(t, strings.HasSuffix(out, "job en-w Succeeded\n"), out)

	done = f.runAsync("vm", "planned-failover", "web01", "--command-id", "pf-w", "--wait")
	require.Eventually(t, func() bool { return f.vmState("web01") == events.PlannedFailoverInProgress }, 10*time.Second, 5*time.Millisecond)
	f.appendAs("web01", "pf-w", events.FailoverFailedData{Mode: events.FailoverPlanned, Step: "stop_source", Reason: "source host down"})
	res = <-done
	require.Equal(t, exitRefused, res[0])
	require.Equal(t, "error: job_failed: planned failover failed at stop_source: source host down\n", res[2])

	status, _, errOut := f.run("vm", "cancel-failover", "web01", "--wait", "--wait-timeout", "300ms")
	require.Equal(t, exitOK, status, errOut, "cancel ends its job at once")
	status, _, errOut = f.run("vm", "disable", "web01", "--wait", "--wait-timeout", "300ms")
	require.Equal(t, exitRefused, status)
	require.Contains(t, errOut, "did not end within 300ms")
	status, _, _ = f.run("vm", "pause", "web01", "--wait")
	require.Equal(t, exitUsage, status, "pause takes no --wait")
}
