package projections

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
)

// TestModel feeds random valid event sequences of many VMs, hosts and a
// plan through the log to the Store and compares every read model with an
// in-memory fold of the same events.
func TestModel(t *testing.T) {
	for _, c := range []struct {
		seed      uint64
		batch     int
		openFirst bool
		steps     int
	}{{1, 1000, false, 1500}, {2, 1, true, 300}, {3, 13, true, 1500}, {4, 1000, true, 1500}} {
		t.Run(fmt.Sprintf("seed=%d/batch=%d/following=%v", c.seed, c.batch, c.openFirst), func(t *testing.T) {
			log := events.NewMemLog()
			g := newGen(newWorld(t, log), c.seed, 12)
			var s *Store
			if c.openFirst {
				s = mustOpen(t, "", log, withBatch(c.batch))
			}
			var last uint64
			for range c.steps {
				last = g.step()
			}
			if !c.openFirst {
				s = mustOpen(t, "", log, withBatch(c.batch))
			}
			waitFor(t, s, last)
			checkModel(t, s, log, g)
		})
	}
}

func checkModel(t *testing.T, s *Store, log *events.MemLog, g *gen) {
	t.Helper()
	ctx := context.Background()
	for _, v := range g.vms {
		if !v.created {
			continue
		}
		recs, err := log.Load(ctx, events.VMAgg(v.name))
		require.NoError(t, err)
		want := events.FoldVM(recs)
		require.Equal(t, v.state.State, want.State, "the generator folds as FoldVM")
		got := queryInto[VMView](t, s, "vm", `{"vm":"`+v.name+`"}`)
		checkVM(t, want, got)

		var model vmModel
		for _, r := range recs {
			model.Apply(r)
		}
		wantView, err := json.Marshal(model.view(testNow))
		require.NoError(t, err)
		require.JSONEq(t, string(wantView), string(ask(t, s, "vm", `{"vm":"`+v.name+`"}`)), v.name)
	}
	checkJobs(t, s, g.starts)
	checkHosts(t, s, log)
	checkStatus(t, s, log, g)
}

func checkVM(t *testing.T, want events.VM, got VMView) {
	t.Helper()
	require.Equal(t, string(want.State), got.ProtectionState, want.Name)
	require.Equal(t, string(want.TestState), got.TestFailoverState, want.Name)
	require.Equal(t, want.Epoch, got.Epoch, want.Name)
	require.Equal(t, want.ActiveHost, got.Host, want.Name)
	require.Equal(t, want.ActiveSite, got.ActiveSite, want.Name)
	require.Equal(t, want.SourceHost, got.SourceHost, want.Name)
	require.Equal(t, want.RecoveryHost, got.RecoveryHost, want.Name)
	require.Equal(t, want.Health, got.Health, want.Name)
	require.Equal(t, operationNames(want.Allowed()), got.AllowedOperations, want.Name)
	require.Len(t, got.RecoveryPoints, len(want.RecoveryPoints), want.Name)
	for i, rp := range want.RecoveryPoints {
		require.Equal(t, rp.ID, got.RecoveryPoints[i].ID)
		require.True(t, rp.Time.Equal(got.RecoveryPoints[i].Time))
		require.Equal(t, rp.AppConsistent, got.RecoveryPoints[i].AppConsistent)
	}
	require.Equal(t, len(want.RecoveryPoints) == 0, got.RPOSeconds == nil, want.Name)
}

// checkJobs: one job per starting event, and each job's steps in log order
// with no event twice.
func checkJobs(t *testing.T, s *Store, starts int) {
	t.Helper()
	jobs := queryInto[[]Job](t, s, "jobs", `{"limit":10000}`)
	require.Equal(t, starts, len(jobs), "one job per starting event")
	for i, j := range jobs {
		if i > 0 {
			require.Less(t, j.Seq, jobs[i-1].Seq, "newest first")
		}
		require.NotEmpty(t, j.Steps)
		require.Equal(t, j.Seq, j.Steps[0].Seq)
		for k := 1; k < len(j.Steps); k++ {
			require.Less(t, j.Steps[k-1].Seq, j.Steps[k].Seq, "job %s steps", j.ID)
		}
		require.Contains(t, []string{events.JobInProgress, events.JobSucceeded, events.JobFailed,
			events.JobCancelled, events.JobSuspended}, j.State)
	}
}

func checkHosts(t *testing.T, s *Store, log *events.MemLog) {
	t.Helper()
	for _, h := range queryInto[[]HostView](t, s, "hosts", ``) {
		recs, err := log.Load(context.Background(), events.HostAgg(h.Name))
		require.NoError(t, err)
		var want events.Host
		for _, r := range recs {
			want.Apply(r)
		}
		require.Equal(t, want.Reach(), h.Reachability, h.Name)
		require.Equal(t, want.Reach() == events.ReachabilityReachable, h.Reachable, h.Name)
		require.Equal(t, want.Site, h.Site, h.Name)
	}
}
