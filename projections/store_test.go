package projections

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/siterecovery/siterecovery/events"
)

// scenario runs a VM through enable, initial replication, recovery points,
// a test failover, a planned failover, commit and reverse replication, and
// a recovery plan job; it returns the last sequence.
func (w *world) scenario() uint64 {
	w.buildFabric()
	vm := events.VMAgg("web01")
	w.emit(vm, "create", events.VMCreatedData{Name: "web01", Host: "hv01", Site: "primary", Cloud: "gold",
		Disks: []events.DiskSpec{{Name: "disk0", Size: 1 << 30}}})
	w.emit(vm, "create", events.DiskProvisionedData{Host: "hv01", Disk: "disk0", Role: events.DiskRoleSource,
		Image: "/data/hv01/web01/disk0.img", NBDURL: "nbd+unix:///disk0?socket=/run/hv01.sock", Epoch: 1})
	w.emit(vm, "enable", enableData("web01"))
	w.emit(vm, "enable", events.DiskProvisionedData{Host: "hv02", Disk: "disk0", Role: events.DiskRoleReplica, Image: "/data/hv02/web01/disk0.img", Epoch: 1})
	w.emit(vm, "enable", events.InitialReplicationStartedData{TotalBytes: 1 << 30})
	w.emit(vm, "enable", events.InitialReplicationProgressData{DoneBytes: 1 << 29, TotalBytes: 1 << 30})
	w.emit(vm, "enable", events.InitialReplicationProgressData{DoneBytes: 1 << 30, TotalBytes: 1 << 30})
	w.emit(vm, "enable", events.InitialReplicationCompletedData{SentBytes: 1 << 30})
	for i := range 3 {
		w.emit(vm, "rp", events.RecoveryPointCreatedData{ID: rpID(i), Time: w.at, AppConsistent: i == 0, Cycle: uint64(i + 1), Epoch: 1})
	}
	w.emit(vm, "health", events.HealthChangedData{Health: events.HealthWarning, Issues: []string{"rpo above threshold"}})
	w.emit(vm, "tfo", events.TestFailoverStartedData{RecoveryPoint: rpID(2), Host: "hv02"})
	w.emit(vm, "tfo", events.TestFailoverCompletedData{RecoveryPoint: rpID(2)})
	w.emit(vm, "tfc", events.TestCleanupStartedData{})
	w.emit(vm, "tfc", events.TestFailoverCleanedUpData{})
	w.emit(vm, "pfo", events.FailoverStartedData{Mode: events.FailoverPlanned, ShutdownSource: true,
		FromHost: "hv01", ToHost: "hv02", FromSite: "primary", ToSite: "secondary"})
	w.emit(vm, "pfo", events.SourceStoppedData{Host: "hv01", FinalCycle: 4})
	w.emit(vm, "pfo", events.FailoverCompletedData{Mode: events.FailoverPlanned, RecoveryPoint: rpID(3), Epoch: 2, Host: "hv02", Site: "secondary"})
	w.emit(vm, "commit", events.FailoverCommittedData{Mode: events.FailoverPlanned})
	w.emit(vm, "reverse", events.ReverseReplicationStartedData{SourceHost: "hv02", SourceSite: "secondary", RecoveryHost: "hv01", TargetSite: "primary", Resync: true})
	w.emit(vm, "reverse", events.DiskProvisionedData{Host: "hv02", Disk: "disk0", Role: events.DiskRoleSource, Image: "/data/hv02/web01/disk0.img", NBDURL: "nbd://127.0.0.1:10809/disk0", Epoch: 2})
	w.emit(vm, "reverse", events.ReverseReplicationCompletedData{SentBytes: 4096})
	w.emit(vm, "rp", events.RecoveryPointCreatedData{ID: "rp-r1", Time: testNow.Add(-90 * time.Second), Cycle: 1, Epoch: 2})
	plan := events.PlanAgg("shop")
	w.emit(plan, "", events.PlanCreatedData{Name: "shop", Groups: []events.PlanGroup{{VMs: []string{"web01"}, ManualAction: "check DNS"}}})
	w.emit(plan, "plan-job", events.PlanJobStartedData{Operation: "test_failover", Job: "plan-job"})
	w.emit(plan, "plan-job", events.PlanGroupStartedData{Job: "plan-job", Group: 0})
	return w.emit(plan, "plan-job", events.PlanSuspendedData{Job: "plan-job", Group: 0, Text: "check DNS"})
}

func rpID(i int) string { return "rp-" + string(rune('a'+i)) }

func TestScenarioQueries(t *testing.T) {
	log := events.NewMemLog()
	w := newWorld(t, log)
	last := w.scenario()
	s := mustOpen(t, "", log)
	waitFor(t, s, last)

	vm := queryInto[map[string]any](t, s, "vm", `{"vm":"web01"}`)
	for _, f := range []string{"name", "host", "protection_state", "test_failover_state", "source_host", "recovery_host",
		"active_site", "epoch", "health", "rpo_seconds", "allowed_operations", "recovery_points", "disks"} {
		require.Contains(t, vm, f)
	}
	v := queryInto[VMView](t, s, "vm", `{"vm":"web01"}`)
	require.Equal(t, "Protected", v.ProtectionState)
	require.Equal(t, "None", v.TestFailoverState)
	require.Equal(t, "hv02", v.Host)
	require.Equal(t, "hv02", v.SourceHost)
	require.Equal(t, "hv01", v.RecoveryHost)
	require.Equal(t, "secondary", v.ActiveSite)
	require.Equal(t, uint64(2), v.Epoch)
	require.Equal(t, events.HealthWarning, v.Health)
	require.Equal(t, []string{"rpo above threshold"}, v.Issues)
	require.NotNil(t, v.RPOSeconds)
	require.Equal(t, int64(90), *v.RPOSeconds)
	require.Equal(t, []string{"disable", "pause", "test_failover", "planned_failover", "unplanned_failover"}, sortedLike(v.AllowedOperations))
	require.Len(t, v.RecoveryPoints, 1)
	require.Equal(t, []DiskView{{Name: "disk0", Size: 1 << 30, Image: "/data/hv02/web01/disk0.img",
		ReplicaImage: "", NBDURL: "nbd://127.0.0.1:10809/disk0"}}, v.Disks)

	jobs := queryInto[[]Job](t, s, "jobs", `{"vm":"web01"}`)
	ops := []string{}
	for _, j := range jobs {
		ops = append(ops, j.Operation+"="+j.State)
	}
	require.Equal(t, []string{"ReverseReplication=Succeeded", "Commit=Succeeded", "PlannedFailover=Succeeded",
		"TestFailoverCleanup=Succeeded", "TestFailover=Succeeded", "EnableProtection=Succeeded"}, ops)
	enable := queryInto[Job](t, s, "job", `{"job":"enable"}`)
	names := []string{}
	for _, st := range enable.Steps {
		names = append(names, st.Name)
	}
	require.Equal(t, []string{"protection_enable_started", "disk_provisioned", "initial_replication_started",
		"initial_replication_progress", "initial_replication_completed"}, names)
	require.NotNil(t, enable.EndedAt)

	plan := queryInto[PlanView](t, s, "plan", `{"plan":"shop"}`)
	require.Equal(t, events.JobSuspended, plan.State)
	require.NotNil(t, plan.CurrentJob)
	require.Equal(t, "PlanTestFailover", plan.CurrentJob.Operation)
	require.Equal(t, events.JobSuspended, plan.CurrentJob.State)

	sites := queryInto[[]SiteView](t, s, "sites", ``)
	require.Equal(t, []SiteView{{Name: "primary", Hosts: []string{"hv01"}, Clouds: []string{"gold"}},
		{Name: "secondary", Hosts: []string{"hv02"}, Clouds: []string{"gold-dr"}}}, sites)
	hosts := queryInto[[]HostView](t, s, "hosts", `{}`)
	require.Len(t, hosts, 2)
	require.True(t, hosts[0].Reachable)
	require.Equal(t, events.ReachabilityReachable, hosts[0].Reachability)
	require.NotNil(t, hosts[0].LastSeen, "the heartbeat that made hv01 reachable")
	require.Equal(t, events.ReachabilityUnknown, hosts[1].Reachability, "hv02 never heartbeated")
	require.False(t, hosts[1].Reachable)
	require.Nil(t, hosts[1].LastSeen)
	require.Equal(t, []string{"web01"}, hosts[1].VMs)
	require.Equal(t, []string{"gold-dr"}, hosts[1].Clouds)
	clouds := queryInto[[]CloudView](t, s, "clouds", `null`)
	require.Equal(t, "source", clouds[0].Role)
	pols := queryInto[[]map[string]any](t, s, "policies", ``)
	require.Equal(t, "30s", pols[0]["copy_frequency"])
	pairs := queryInto[[]PairingView](t, s, "pairings", ``)
	require.Equal(t, "secondary", pairs[0].TargetSite)
	require.Len(t, queryInto[[]NetmapView](t, s, "netmaps", ``), 1)

	st := queryInto[Status](t, s, "status", ``)
	require.Equal(t, 2, st.Sites)
	require.Equal(t, HostCounts{Total: 2, Reachable: 1, Unknown: 1}, st.Hosts)
	require.Equal(t, map[string]int{"Protected": 1}, st.VMs.ByProtectionState)
	require.Equal(t, last, st.Checkpoint)

	hist := queryInto[[]map[string]any](t, s, "events", `{"kind":"vm","id":"web01"}`)
	require.Equal(t, "vm_created", hist[0]["type"])
	require.Equal(t, "web01", hist[0]["data"].(map[string]any)["name"])
	recent := queryInto[[]map[string]any](t, s, "events", `{"limit":5}`)
	require.Len(t, recent, 5)
	require.Equal(t, float64(last), recent[4]["seq"])
}

// sortedLike orders ops as the expectation lists them, to compare as sets.
func sortedLike(ops []string) []string {
	order := []string{"disable", "pause", "test_failover", "planned_failover", "unplanned_failover"}
	out := []string{}
	for _, o := range order {
		for _, got := range ops {
			if got == o {
				out = append(out, o)
			}
		}
	}
	if len(out) != len(ops) {
		return ops
	}
	return out
}

func TestWaitForReadsOwnWrites(t *testing.T) {
	log := events.NewMemLog()
	w := newWorld(t, log)
	s := mustOpen(t, "", log)
	w.buildFabric()
	for i := range 50 {
		name := "vm" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		seq := w.emit(events.VMAgg(name), "", events.VMCreatedData{Name: name, Host: "hv01", Site: "primary", Cloud: "gold"})
		waitFor(t, s, seq)
		v := queryInto[VMView](t, s, "vm", `{"vm":"`+name+`"}`)
		require.Equal(t, "Unprotected", v.ProtectionState)
		require.Equal(t, []string{"enable"}, v.AllowedOperations)
	}
	seq := w.emit(events.VMAgg("vmaa"), "e", enableData("vmaa"))
	v, err := s.Query(context.Background(), "vm", json.RawMessage(`{"vm":"vmaa","min_seq":`+jsonNum(seq)+`}`))
	require.NoError(t, err)
	require.Equal(t, "EnablingProtection", v.(VMView).ProtectionState)

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, s.WaitFor(ctx, seq+1), context.DeadlineExceeded)
	require.NoError(t, s.Close())
	require.NoError(t, s.Close())
	require.ErrorIs(t, s.WaitFor(context.Background(), seq+1), ErrClosed)
	_, err = s.Query(context.Background(), "vms", nil)
	require.ErrorIs(t, err, ErrClosed)
}

func jsonNum(n uint64) string { b, _ := json.Marshal(n); return string(b) }

func TestQueryErrors(t *testing.T) {
	log := events.NewMemLog()
	w := newWorld(t, log)
	last := w.scenario()
	s := mustOpen(t, "", log)
	waitFor(t, s, last)
	for _, c := range []struct{ name, params string }{
		{"nope", ``}, {"vm", `[]`}, {"vm", `{"vm":1}`}, {"vm", `{}`}, {"vm", `{"vm":"a.b"}`},
		{"vm", `{"vm":"web01","plan":"x"}`}, {"sites", `{"vm":"web01"}`}, {"jobs", `{"limit":-1}`},
		{"job", `{}`}, {"events", `{"kind":"nope","id":"x"}`}, {"plan", `{`},
	} {
		_, err := s.Query(context.Background(), c.name, json.RawMessage(c.params))
		require.ErrorIs(t, err, events.ErrInvalidArgument, "%s %s", c.name, c.params)
	}
	for _, c := range []struct{ name, params, names string }{
		{"vm", `{"vm":"db01"}`, "db01"}, {"plan", `{"plan":"nope"}`, "nope"},
		{"job", `{"job":"j-404"}`, "j-404"}, {"events", `{"kind":"vm","id":"db01"}`, "db01"},
	} {
		_, err := s.Query(context.Background(), c.name, json.RawMessage(c.params))
		require.ErrorIs(t, err, events.ErrNotFound, "%s %s", c.name, c.params)
		require.Contains(t, err.Error(), c.names)
	}
}

// allAnswers runs every query that takes no name, and the named ones for
// the scenario, as JSON.
func allAnswers(t *testing.T, s *Store, vms ...string) map[string]string {
	out := map[string]string{}
	for _, q := range []string{"sites", "hosts", "clouds", "policies", "pairings", "netmaps", "vms", "plans", "jobs", "status"} {
		out[q] = string(ask(t, s, q, ``))
	}
	for _, vm := range vms {
		out["vm "+vm] = string(ask(t, s, "vm", `{"vm":"`+vm+`"}`))
	}
	return out
}

func TestRebuildAfterDelete(t *testing.T) {
	log := events.NewMemLog()
	w := newWorld(t, log)
	last := w.scenario()
	path := filepath.Join(t.TempDir(), "projections.db")
	s, err := open(context.Background(), path, log, testLogger(t), withNow(testNow), withBatch(3))
	require.NoError(t, err)
	waitFor(t, s, last)
	before := allAnswers(t, s, "web01")
	require.NoError(t, s.Close())

	reopened := mustOpen(t, path, log)
	waitFor(t, reopened, last)
	require.Equal(t, before, allAnswers(t, reopened, "web01"), "after a restart")
	require.NoError(t, reopened.Close())

	require.NoError(t, os.Remove(path))
	rebuilt := mustOpen(t, path, log)
	waitFor(t, rebuilt, last)
	require.Equal(t, before, allAnswers(t, rebuilt, "web01"), "after deleting the file")
}

func TestOpenErrors(t *testing.T) {
	_, err := Open(context.Background(), filepath.Join(t.TempDir(), "p.db"), nil, testLogger(t))
	require.ErrorIs(t, err, events.ErrInvalidArgument)
	_, err = Open(context.Background(), filepath.Join(t.TempDir(), "missing", "p.db"), events.NewMemLog(), testLogger(t))
	require.Error(t, err)
	require.True(t, errors.Is(err, os.ErrNotExist), "%v", err)
}

func TestFileOfAnotherLogIsRefused(t *testing.T) {
	log := events.NewMemLog()
	last := newWorld(t, log).scenario()
	path := filepath.Join(t.TempDir(), "projections.db")
	s := mustOpen(t, path, log)
	waitFor(t, s, last)
	require.NoError(t, s.Close())

	other := events.NewMemLog()
	newWorld(t, other).buildFabric()
	s = mustOpen(t, path, other)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.ErrorIs(t, s.WaitFor(ctx, last+1), ErrAhead)
	require.ErrorIs(t, s.Err(), ErrAhead)
}

// TestFileOfAnotherFormatIsRebuilt: a file stamped with a format this build
// does not know is emptied and rebuilt from the log, never read; a file
// with no stamp (written before the stamp) is read as format 1.
func TestFileOfAnotherFormatIsRebuilt(t *testing.T) {
	log := events.NewMemLog()
	last := newWorld(t, log).scenario()
	path := filepath.Join(t.TempDir(), "projections.db")
	s := mustOpen(t, path, log)
	waitFor(t, s, last)
	before := allAnswers(t, s, "web01")
	require.NoError(t, s.Close())

	restamp := func(v []byte) {
		db, err := bolt.Open(path, 0o600, nil)
		require.NoError(t, err)
		require.NoError(t, db.Update(func(tx *bolt.Tx) error {
			meta := tx.Bucket(bucketMeta)
			if v == nil {
				return meta.Delete(keyFormat)
			}
			// A read model this build would misread, under a format it
			// does not know.
			require.NoError(t, tx.Bucket(bucketVMs).Put([]byte("web01"), []byte(`{"garbage":`)))
			return meta.Put(keyFormat, v)
		}))
		require.NoError(t, db.Close())
	}
	restamp(nil)
	s = mustOpen(t, path, log)
	require.Equal(t, last, s.Checkpoint(), "a file without a stamp is format 1: resumed, not rebuilt")
	require.NoError(t, s.Close())

	restamp(u64(FileFormat + 1))
	s = mustOpen(t, path, log)
	waitFor(t, s, last)
	require.Equal(t, before, allAnswers(t, s, "web01"), "rebuilt from the log: the garbage under the unknown format is gone")
}
