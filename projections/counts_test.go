package projections

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/siterecovery/siterecovery/events"
)

// checkCounts: the stored counts of the status query equal a recount of
// every VM and job in the file.
func checkCounts(tb testing.TB, s *Store) {
	tb.Helper()
	var stored, full map[string]int64
	require.NoError(tb, s.view(func(tx *bolt.Tx) (err error) {
		if stored, err = readCounts(tx); err != nil {
			return err
		}
		full, err = recount(tx)
		return err
	}))
	for k, n := range full {
		if n == 0 {
			delete(full, k)
		}
	}
	require.Equal(tb, full, stored, "stored counts vs a recount at checkpoint %d", s.Checkpoint())
}

// checkStatus: the status answer equals the counts of the log itself: each
// VM and host folded from its events, the jobs as the jobs query lists
// them.
func checkStatus(t *testing.T, s *Store, log *events.MemLog, g *gen) {
	t.Helper()
	ctx := context.Background()
	want := Status{Checkpoint: s.Checkpoint(), Sites: 2, Jobs: map[string]int{},
		VMs: VMCounts{ByProtectionState: map[string]int{}, ByHealth: map[string]int{}}}
	for _, v := range g.vms {
		recs, err := log.Load(ctx, events.VMAgg(v.name))
		require.NoError(t, err)
		vm := events.FoldVM(recs)
		if !vm.Exists() {
			continue
		}
		want.VMs.Total++
		want.VMs.ByProtectionState[string(vm.State)]++
		want.VMs.ByHealth[orDefault(vm.Health, events.HealthNormal)]++
	}
	for _, name := range []string{"hv01", "hv02"} {
		recs, err := log.Load(ctx, events.HostAgg(name))
		require.NoError(t, err)
		var h events.Host
		for _, r := range recs {
			h.Apply(r)
		}
		want.Hosts.Total++
		switch h.Reach() {
		case events.ReachabilityReachable:
			want.Hosts.Reachable++
		case events.ReachabilityUnknown:
			want.Hosts.Unknown++
		default:
			want.Hosts.Unreachable++
		}
	}
	for _, j := range queryInto[[]Job](t, s, "jobs", `{"limit":10000}`) {
		want.Jobs[j.State]++
	}
	require.Equal(t, want, queryInto[Status](t, s, "status", ``))
	checkCounts(t, s)
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// TestCountsOfAnOlderFile: a file written before the counts were kept
// (no counts bucket) gets them at open, from its read models, and keeps
// them from there.
func TestCountsOfAnOlderFile(t *testing.T) {
	log := events.NewMemLog()
	g := newGen(newWorld(t, log), 11, 10)
	var last uint64
	for range 800 {
		last = g.step()
	}
	path := filepath.Join(t.TempDir(), "projections.db")
	s := mustOpen(t, path, log)
	waitFor(t, s, last)
	before := ask(t, s, "status", ``)
	require.NoError(t, s.Close())

	db, err := bolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketCounts) }))
	require.NoError(t, db.Close())

	s = mustOpen(t, path, log)
	require.JSONEq(t, string(before), string(ask(t, s, "status", ``)))
	for range 400 {
		last = g.step()
	}
	waitFor(t, s, last)
	checkModel(t, s, log, g)
}

// TestCountsAfterRebuild: the counts of a file rebuilt from the log equal
// those the file had, after a restart and after deleting it.
func TestCountsAfterRebuild(t *testing.T) {
	log := events.NewMemLog()
	g := newGen(newWorld(t, log), 12, 10)
	var last uint64
	for range 1000 {
		last = g.step()
	}
	path := filepath.Join(t.TempDir(), "projections.db")
	for i, reopen := range []func(){func() {}, func() {}, func() { require.NoError(t, os.Remove(path)) }} {
		reopen()
		s := mustOpen(t, path, log, withBatch(7*(i+1)))
		waitFor(t, s, last)
		checkModel(t, s, log, g)
		require.NoError(t, s.Close(), fmt.Sprint(i))
	}
}
