package handlers

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
)

// randomVMEvent is one of the VM events that touch every part of the fold:
// the slices and maps folds append to or delete from included.
func randomVMEvent(rng *rand.Rand, name string, i int) events.Data {
	point := fmt.Sprintf("rp%d", rng.IntN(i+1))
	switch rng.IntN(16) {
	case 0:
		return events.VMCreatedData{Name: name, Host: "hv01", Site: "primary", Cloud: "gold",
			Disks: []events.DiskSpec{{Name: "disk0", Size: 1 << 30}}, Networks: []string{"lan"}}
	case 1:
		return events.DiskProvisionedData{Host: fmt.Sprintf("hv0%d", rng.IntN(3)), Disk: fmt.Sprintf("disk%d", rng.IntN(2)),
			Role: []string{"source", "replica"}[rng.IntN(2)], Image: fmt.Sprintf("/img/%d", i), Epoch: uint64(rng.IntN(3))}
	case 2:
		return events.RecoveryPointsPrunedData{IDs: []string{point, fmt.Sprintf("rp%d", rng.IntN(i+1))}}
	case 3:
		return events.HealthChangedData{Health: []string{events.HealthNormal, events.HealthWarning, events.HealthCritical}[rng.IntN(3)]}
	case 4:
		return events.FailoverStartedData{Mode: []string{events.FailoverPlanned, events.FailoverUnplanned, events.FailoverTest}[rng.IntN(3)],
			RecoveryPoint: point, FromHost: "hv01", ToHost: "hv02"}
	case 5:
		return events.FailoverCompletedData{Mode: events.FailoverPlanned, RecoveryPoint: point, Epoch: uint64(i), Host: "hv02", Site: "dr"}
	case 6:
		return events.FailoverFailedData{Mode: []string{events.FailoverPlanned, events.FailoverTest}[rng.IntN(2)], Step: "ready", Reason: "x"}
	case 7:
		return events.DivergenceDetectedData{Host: "hv01", Epoch: uint64(rng.IntN(4)), Blocks: 3}
	case 8:
		return events.TestFailoverStartedData{RecoveryPoint: point, Host: "hv02"}
	case 9:
		return events.ReverseReplicationStartedData{SourceHost: "hv02", SourceSite: "dr", RecoveryHost: "hv01", TargetSite: "primary", Resync: rng.IntN(2) == 0}
	case 10:
		return events.FailoverCommittedData{}
	case 11:
		return events.SourceStoppedData{Host: "hv01", FinalCycle: uint64(i)}
	default:
		return events.RecoveryPointCreatedData{ID: fmt.Sprintf("rp%d", i), Time: time.Unix(int64(i), 0).UTC(), Cycle: uint64(i),
			Roots: map[string]string{"disk0": fmt.Sprintf("root%d", i)}}
	}
}

func randomPlanEvent(rng *rand.Rand, name string, i int) events.Data {
	return randomPlanEventOf(rng.IntN(6), name, i)
}

func randomPlanEventOf(n int, name string, i int) events.Data {
	rng := rand.New(rand.NewPCG(uint64(i), uint64(n)))
	switch n {
	case 0:
		return events.PlanCreatedData{Name: name, Groups: []events.PlanGroup{{VMs: []string{"a", "b"}}, {VMs: []string{"c"}}}}
	case 1:
		return events.PlanJobStartedData{Operation: planPlannedFailover, Job: fmt.Sprintf("job%d", i)}
	case 2:
		return events.PlanGroupStartedData{Job: "j", Group: rng.IntN(2)}
	case 3:
		return events.PlanActionCompletedData{Job: "j", Group: rng.IntN(2), Action: "planned_failover", Target: "a", Error: []string{"", "bad"}[rng.IntN(2)]}
	case 4:
		return events.PlanSuspendedData{Job: "j", Group: rng.IntN(2), Text: "check"}
	default:
		return events.PlanResumedData{}
	}
}

func randomHostOrCloudEvent(rng *rand.Rand, agg events.Aggregate, i int) events.Data {
	if agg.Kind == events.KindAutomation {
		switch rng.IntN(4) {
		case 0:
			return events.AutomationAddedData{Name: agg.ID, On: events.FailoverCompleted, Exec: "true"}
		case 1:
			return events.AutomationRemovedData{Name: agg.ID}
		default:
			return events.AutomationExecutedData{Name: agg.ID, EventSeq: uint64(rng.IntN(i + 1)), ExitCode: rng.IntN(2)}
		}
	}
	if agg.Kind == events.KindHost {
		switch rng.IntN(4) {
		case 0:
			return events.HostRegisteredData{Name: agg.ID, Site: "primary"}
		case 1:
			return events.HostAssignedData{Host: agg.ID, Cloud: fmt.Sprintf("c%d", rng.IntN(2))}
		case 2:
			return events.HostReachableData{Name: agg.ID, Since: time.Unix(int64(i), 0).UTC()}
		default:
			return events.HostUnassignedData{Host: agg.ID, Cloud: "c0"}
		}
	}
	switch rng.IntN(3) {
	case 0:
		return events.CloudCreatedData{Name: agg.ID, Site: "primary", Hosts: []string{"hv01"}}
	case 1:
		return events.CloudHostAddedData{Cloud: agg.ID, Host: fmt.Sprintf("hv%d", rng.IntN(5))}
	default:
		return events.CloudPairedData{Cloud: agg.ID, Pairing: "p", Role: "source"}
	}
}

// scribble writes into every slice and map of a loaded state, as a careless
// caller might: the cache must not see it.
func scribble(s *aggState) {
	s.View.RecoveryPoints = append(s.View.RecoveryPoints, events.RecoveryPoint{ID: "scribbled"})
	if len(s.View.RecoveryPoints) > 1 {
		s.View.RecoveryPoints[0].ID = "scribbled"
	}
	for disk := range s.View.Images {
		s.View.Images[disk] = append(s.View.Images[disk], events.DiskImage{Host: "scribbled"})
	}
	if s.View.Images != nil {
		s.View.Images["scribbled"] = nil
	}
	if s.View.Divergences != nil {
		s.View.Divergences[divergenceKey{"scribbled", 9}] = true
	}
	s.Cloud.Hosts = append(s.Cloud.Hosts, "scribbled")
	if s.Run.done != nil {
		s.Run.done[actionKey{Target: "scribbled"}] = "x"
	}
	s.Marks = append(s.Marks, events.Record{Seq: 1 << 40})
	s.Executed = append(s.Executed, 1<<40)
}

// TestFoldCacheEqualsFullFold: random histories of every kind, appended in
// random chunks and loaded through a cache small enough to evict, by
// callers that scribble on what they get: every load equals the fold of the
// whole history, field by field with the handlers' own folds.
func TestFoldCacheEqualsFullFold(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(7, 11))
	log := events.NewMemLog()
	cache := newFoldCache(log, 3)
	aggs := []events.Aggregate{events.VMAgg("a"), events.VMAgg("b"), events.VMAgg("c"), events.PlanAgg("p"),
		events.HostAgg("hv01"), events.CloudAgg("gold"), automationAgg("notify")}
	versions := map[events.Aggregate]uint64{}
	// A plan's job events come after a job started (the fold expects it).
	res, err := log.Append(ctx, events.PlanAgg("p"), 0, events.Meta{CommandID: "seed"},
		randomPlanEventOf(0, "p", 0), events.PlanJobStartedData{Operation: planPlannedFailover, Job: "j"})
	require.NoError(t, err)
	versions[events.PlanAgg("p")] = res.Last()
	for round := range 400 {
		agg := aggs[rng.IntN(len(aggs))]
		var evs []events.Data
		for j := range 1 + rng.IntN(4) {
			i := round*4 + j
			switch agg.Kind {
			case events.KindVM:
				evs = append(evs, randomVMEvent(rng, agg.ID, i))
			case events.KindPlan:
				evs = append(evs, randomPlanEvent(rng, agg.ID, i))
			default:
				evs = append(evs, randomHostOrCloudEvent(rng, agg, i))
			}
		}
		res, err := log.Append(ctx, agg, versions[agg], events.Meta{CommandID: fmt.Sprintf("c%d", round), Actor: "test"}, evs...)
		require.NoError(t, err)
		versions[agg] = res.Last()

		check := aggs[rng.IntN(len(aggs))]
		got, err := cache.load(ctx, check)
		require.NoError(t, err)
		recs, err := log.Load(ctx, check)
		require.NoError(t, err)
		requireFullFold(t, check, recs, got)
		scribble(&got)
	}
	require.LessOrEqual(t, cache.len(), 3)
	for _, agg := range aggs {
		got, err := cache.load(ctx, agg)
		require.NoError(t, err)
		recs, err := log.Load(ctx, agg)
		require.NoError(t, err)
		requireFullFold(t, agg, recs, got)
	}
}

func requireFullFold(t *testing.T, agg events.Aggregate, recs []events.Record, got aggState) {
	t.Helper()
	require.Equal(t, foldAll(recs), got, "%s after %d events", agg, len(recs))
	require.Equal(t, lastSeq(recs), got.Seq)
	switch agg.Kind {
	case events.KindVM:
		require.Equal(t, foldView(recs), got.View)
		require.Equal(t, events.FoldVM(recs), got.View.VM)
	case events.KindPlan:
		require.Equal(t, foldPlanRun(recs), got.Run)
		require.Equal(t, foldPlan(recs), got.Run.plan)
	case events.KindHost:
		require.Equal(t, foldHost(recs), got.Host)
	case events.KindCloud:
		require.Equal(t, foldCloud(recs), got.Cloud)
	case events.KindAutomation:
		require.Equal(t, foldAutomation(recs), got.Automation)
		for _, r := range recs {
			if d, ok := r.Data.(events.AutomationExecutedData); ok {
				_, want := executedFor(recs, d.EventSeq)
				require.Equal(t, want, got.executed(d.EventSeq))
			}
		}
		_, want := executedFor(recs, 1<<40)
		require.Equal(t, want, got.executed(1<<40))
	}
	var marks []events.Record
	for _, r := range recs {
		if !routineTypes[r.Type()] {
			marks = append(marks, r)
		}
	}
	require.Equal(t, marks, got.Marks)
}

// TestFoldCacheConcurrentWritersLoseNothing: writers sharing one cache (and
// one with its own) append to one VM at the version they loaded, reloading
// on a conflict: every append lands once, and every cache folds them all.
func TestFoldCacheConcurrentWritersLoseNothing(t *testing.T) {
	ctx := context.Background()
	log := events.NewMemLog()
	agg := events.VMAgg("web01")
	_, err := log.Append(ctx, agg, 0, events.Meta{CommandID: "create"}, randomVMEvent(rand.New(rand.NewPCG(1, 1)), "web01", 0))
	require.NoError(t, err)
	shared, own := newFoldCache(log, 2), newFoldCache(log, 2)
	const writers, each = 6, 25
	var wg sync.WaitGroup
	for w := range writers {
		cache := shared
		if w == 0 {
			cache = own
		}
		wg.Go(func() {
			for i := range each {
				for {
					cur, err := cache.load(ctx, agg)
					if !assertNoError(t, err) {
						return
					}
					id := fmt.Sprintf("w%d-%d", w, i)
					ev := events.RecoveryPointCreatedData{ID: id, Roots: map[string]string{"disk0": id}}
					_, err = log.Append(ctx, agg, cur.Seq, events.Meta{CommandID: id, Actor: "agent:hv01"}, ev)
					if err == nil {
						break
					}
					if !assertErrorIs(t, err, events.ErrConflict) {
						return
					}
				}
			}
		})
	}
	wg.Wait()
	recs, err := log.Load(ctx, agg)
	require.NoError(t, err)
	require.Len(t, recs, 1+writers*each)
	for _, c := range []*foldCache{shared, own} {
		got, err := c.load(ctx, agg)
		require.NoError(t, err)
		requireFullFold(t, agg, recs, got)
		require.Len(t, got.View.RecoveryPoints, writers*each)
	}
}

// assertNoError and assertErrorIs report in a test's goroutines (require
// may not stop them).
func assertNoError(t *testing.T, err error) bool {
	if err != nil {
		t.Errorf("load: %v", err)
		return false
	}
	return true
}

func assertErrorIs(t *testing.T, err, target error) bool {
	if !errors.Is(err, target) {
		t.Errorf("append: %v", err)
		return false
	}
	return true
}

// TestFoldCacheSeesOtherWriters: a command decided by one service on a VM
// another service (another cache) changed since sees the change: the cache
// reads what was appended after its state, so nothing is decided on stale
// state and the version appended at is the true last one.
func TestFoldCacheSeesOtherWriters(t *testing.T) {
	ctx := context.Background()
	log := events.NewMemLog()
	a, b := newFoldCache(log, 10), newFoldCache(log, 10)
	agg := events.VMAgg("db01")
	res, err := log.Append(ctx, agg, 0, events.Meta{CommandID: "create"}, events.VMCreatedData{Name: "db01", Host: "hv01", Site: "primary"})
	require.NoError(t, err)
	before, err := a.load(ctx, agg)
	require.NoError(t, err)
	require.Equal(t, events.HealthNormal, before.View.Health)
	cur, err := b.load(ctx, agg)
	require.NoError(t, err)
	_, err = log.Append(ctx, agg, cur.Seq, events.Meta{CommandID: "h"}, events.HealthChangedData{Health: events.HealthCritical})
	require.NoError(t, err)
	_, err = log.Append(ctx, agg, before.Seq, events.Meta{CommandID: "stale"}, events.HealthChangedData{Health: events.HealthWarning})
	require.ErrorIs(t, err, events.ErrConflict, "a state loaded before the change conflicts")
	after, err := a.load(ctx, agg)
	require.NoError(t, err)
	require.Equal(t, events.HealthCritical, after.View.Health)
	require.Equal(t, res.Last()+1, after.Seq)
}
