package handlers

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/agentproto"
)

func TestPlannedFailoverHappyPath(t *testing.T) {
	t.Parallel()
	f := mustStartPM(t, PMConfig{Dir: t.TempDir()})
	f.buildFabric()
	f.protect("web01")

	res := f.ok("sr.cmd.vm.planned_failover", m{"vm": "web01", "command_id": "pf-1"})
	require.Equal(t, "pf-1", res.Job)
	v := f.vm("web01")
	require.Equal(t, events.PlannedFailoverInProgress, v.State)
	require.Equal(t, events.FailoverStartedData{Mode: events.FailoverPlanned, ShutdownSource: true,
		FromHost: "hv01", FromSite: "primary", ToHost: "hv11", ToSite: "secondary"}, v.Failover.Data)

	// The recovery host may not go first; the source stops at epoch 1.
	f.agentRefused("hv11", agentproto.VerbFailoverReady, m{"vm": "web01", "job": "pf-1", "epoch": 2, "recovery_point": "rp-final", "disks": disks("web01", "hv11", "")}, CodeInvalidState)
	f.agentRefused("hv11", agentproto.VerbVMStopped, m{"vm": "web01", "job": "pf-1", "epoch": 1, "final_cycle": 7}, CodeUnauthorized)
	f.agentRefused("hv01", agentproto.VerbVMStopped, m{"vm": "web01", "job": "pf-1", "epoch": 2, "final_cycle": 7}, CodeInvalidArgument)
	f.playPlanned("web01", "pf-1", 2)
	again := f.agent("hv01", agentproto.VerbVMStopped, m{"vm": "web01", "job": "pf-1", "epoch": 1, "final_cycle": 7})
	require.Empty(t, again.Seqs, "a repeated report appends nothing")

	v = f.vm("web01")
	require.Equal(t, events.FailoverCommitPending, v.State)
	require.Equal(t, uint64(2), v.Epoch)
	require.Equal(t, "hv11", v.ActiveHost)
	require.Equal(t, "secondary", v.ActiveSite)
	require.Contains(t, v.Images["disk0"], events.DiskImage{Host: "hv11", Role: events.DiskRoleSource,
		Image: "/data/hv11/web01/disk0.img", NBDURL: "nbd+unix:///web01-disk0?socket=/data/hv11/nbd.sock", Epoch: 2})
	recs, err := f.log.Load(context.Background(), events.VMAgg("web01"))
	require.NoError(t, err)
	for _, r := range recs {
		if c, ok := r.Data.(events.FailoverCompletedData); ok {
			require.Equal(t, []events.NIC{{SourceNetwork: "lan-a", TargetNetwork: "lan-b"}}, c.NICs, "NICs on the mapped network")
			require.Equal(t, "pf-1", r.Meta.CorrelationID)
		}
		if s, ok := r.Data.(events.SourceStoppedData); ok {
			require.Equal(t, map[string]string{"disk0": "abcd"}, s.Roots)
		}
	}

	j := f.job("pf-1", events.JobSucceeded)
	require.Equal(t, "PlannedFailover", j.Operation)
	require.Equal(t, []string{"failover_started", "source_stopped", "failover_completed", "disk_provisioned"}, stepNames(j))

	// Without a read model the mappings come from the log itself.
	nets, err := NewFailoverReports(f.log, nil, zerolog.Nop()).netmaps(context.Background())
	require.NoError(t, err)
	require.Equal(t, map[string]string{"lan-a": "lan-b"}, nets)
}

func TestPlannedFailoverTimeout(t *testing.T) {
	t.Parallel()
	f := mustStartPM(t, PMConfig{FailoverTimeout: 300 * time.Millisecond})
	f.buildFabric()
	f.protect("web01")
	f.ok("sr.cmd.vm.planned_failover", m{"vm": "web01", "command_id": "pf-t"})
	f.agent("hv01", agentproto.VerbVMStopped, m{"vm": "web01", "job": "pf-t", "epoch": 1, "final_cycle": 3})

	v := f.waitVM("web01", "PlannedFailoverFailed", func(v vmView) bool { return v.State == events.PlannedFailoverFailed })
	require.Equal(t, uint64(1), v.Epoch, "a failed failover keeps the epoch")
	j := f.job("pf-t", events.JobFailed)
	require.Len(t, j.Errors, 1)
	require.Contains(t, j.Errors[0], "timeout: not serving on the recovery host within 300ms")
	require.Equal(t, 1, f.count(events.VMAgg("web01"), events.FailoverFailed))

	// Too late: the recovery host's report is refused; cancel goes back.
	f.agentRefused("hv11", agentproto.VerbFailoverReady, m{"vm": "web01", "job": "pf-t", "epoch": 2, "recovery_point": "rp-x", "disks": disks("web01", "hv11", "")}, CodeInvalidState)
	res := f.ok("sr.cmd.vm.cancel_failover", m{"vm": "web01", "command_id": "cancel-1"})
	require.Equal(t, "cancel-1", res.Job)
	v = f.vm("web01")
	require.Equal(t, events.Protected, v.State)
	require.Equal(t, uint64(2), v.Epoch)
	require.Equal(t, "hv01", v.ActiveHost)
	f.job("cancel-1", events.JobSucceeded)
}

// TestPlannedFailoverWaitsForASourceNotHeardYet: a source host never heard
// from since it registered is unknown, not unreachable: the planned failover
// waits for it, for the unreachable threshold after its registration, and
// fails at stop_source only then.
func TestPlannedFailoverWaitsForASourceNotHeardYet(t *testing.T) {
	t.Parallel()
	const threshold = 400 * time.Millisecond
	f := mustStartPM(t, PMConfig{UnreachableAfter: threshold})
	f.buildFabric()
	f.protectUnheard("web01")
	f.ok("sr.cmd.vm.planned_failover", m{"vm": "web01", "command_id": "pf-u"})
	f.waitVM("web01", "PlannedFailoverFailed", func(v vmView) bool { return v.State == events.PlannedFailoverFailed })
	j := f.job("pf-u", events.JobFailed)
	require.Contains(t, j.Errors[0], "stop_source: source host hv01 was not heard from within 400ms")
	recs, err := f.log.Load(context.Background(), events.HostAgg("hv01"))
	require.NoError(t, err)
	registered := foldHost(recs).Registered
	require.GreaterOrEqual(t, j.EndedAt.Sub(registered), threshold, "failed before the threshold had passed since the registration")
}

// TestPlannedFailoverGoesOnWithASourceNotHeardYet: the source's answer
// comes before its first heartbeat; the failover completes.
func TestPlannedFailoverGoesOnWithASourceNotHeardYet(t *testing.T) {
	t.Parallel()
	f := mustStartPM(t, PMConfig{UnreachableAfter: time.Hour})
	f.buildFabric()
	f.protectUnheard("web01")
	f.ok("sr.cmd.vm.planned_failover", m{"vm": "web01", "command_id": "pf-g"})
	f.playPlanned("web01", "pf-g", 2)
	f.job("pf-g", events.JobSucceeded)
	require.Equal(t, events.FailoverCommitPending, f.vm("web01").State)
}

// TestPlannedFailoverSourceUnreachableFails: a source host observed silent
// past the threshold fails the planned failover at stop_source.
func TestPlannedFailoverSourceUnreachableFails(t *testing.T) {
	t.Parallel()
	f := mustStartPM(t, PMConfig{UnreachableAfter: 50 * time.Millisecond})
	f.buildFabric()
	f.protect("web01")
	recs, err := f.log.Load(context.Background(), events.HostAgg("hv01"))
	require.NoError(t, err)
	_, err = f.log.Append(context.Background(), events.HostAgg("hv01"), lastSeq(recs),
		events.Meta{At: time.Now().UTC(), CommandID: "sweep-u", Actor: "control"}, events.HostUnreachableData{Name: "hv01", LastSeen: time.Now().UTC()})
	require.NoError(t, err)
	f.ok("sr.cmd.vm.planned_failover", m{"vm": "web01", "command_id": "pf-x"})
	f.waitVM("web01", "PlannedFailoverFailed", func(v vmView) bool { return v.State == events.PlannedFailoverFailed })
	j := f.job("pf-x", events.JobFailed)
	require.Contains(t, j.Errors[0], "stop_source: source host hv01 is unreachable")
}

func TestCommitAfterPlannedStartsReverseReplication(t *testing.T) {
	t.Parallel()
	f := mustStartPM(t, PMConfig{})
	f.buildFabric()
	f.protect("web01")
	f.ok("sr.cmd.vm.planned_failover", m{"vm": "web01", "command_id": "pf-c"})
	f.playPlanned("web01", "pf-c", 2)
	res := f.ok("sr.cmd.vm.commit", m{"vm": "web01", "command_id": "commit-1"})
	f.job("commit-1", events.JobSucceeded)

	v := f.waitVM("web01", "ReverseReplication", func(v vmView) bool { return v.State == events.ReverseReplicationState })
	require.Greater(t, v.Reverse.Seq, res.Seq)
	require.Equal(t, "hv11", v.SourceHost)
	require.Equal(t, "secondary", v.SourceSite)
	require.Equal(t, "hv01", v.RecoveryHost)
	require.Equal(t, "primary", v.TargetSite)
	require.False(t, v.ReverseResync, "no full copy after a planned failover")
	rev := v.Reverse.Job

	// The first point applied in the new direction completes it.
	f.agentRefused("hv11", agentproto.VerbRecoveryPoint, m{"vm": "web01", "id": "rp-r1", "time": time.Now(), "cycle": 1, "epoch": 2, "bytes": 9}, CodeUnauthorized)
	f.point("web01", "hv01", "rp-r1", 1, 2)
	v = f.waitVM("web01", "Protected reversed", func(v vmView) bool { return v.State == events.Protected })
	require.Equal(t, "hv11", v.ActiveHost)
	j := f.job(rev, events.JobSucceeded)
	require.Equal(t, "ReverseReplication", j.Operation)
	require.Equal(t, []string{"reverse_replication_started", "reverse_replication_completed"}, stepNames(j))
	require.Equal(t, 1, f.count(events.VMAgg("web01"), events.ReverseReplicationStarted))

	// Failback: planned failover back to the first site, commit, protected
	// in the first direction again.
	f.agent("hv01", agentproto.VerbHeartbeat, m{"time": time.Now()})
	f.ok("sr.cmd.vm.planned_failover", m{"vm": "web01", "command_id": "fb-1"})
	f.agent("hv11", agentproto.VerbVMStopped, m{"vm": "web01", "epoch": 2, "final_cycle": 4})
	f.agent("hv01", agentproto.VerbFailoverReady, m{"vm": "web01", "epoch": 3, "recovery_point": "rp-fb", "disks": disks("web01", "hv01", "")})
	f.job("fb-1", events.JobSucceeded)
	f.ok("sr.cmd.vm.commit", m{"vm": "web01"})
	f.waitVM("web01", "ReverseReplication", func(v vmView) bool { return v.State == events.ReverseReplicationState })
	f.point("web01", "hv11", "rp-fb-1", 1, 3)
	v = f.waitVM("web01", "Protected", func(v vmView) bool { return v.State == events.Protected })
	require.Equal(t, "hv01", v.ActiveHost)
	require.Equal(t, "hv01", v.SourceHost)
	require.Equal(t, "hv11", v.RecoveryHost)
	require.Equal(t, uint64(3), v.Epoch)
}

func TestUnplannedFailoverChosenPointAndReverseResync(t *testing.T) {
	t.Parallel()
	f := mustStartPM(t, PMConfig{})
	f.buildFabric()
	f.protect("web01")
	f.point("web01", "hv11", "rp-web01-2", 2, 1)

	r := f.request("sr.cmd.vm.unplanned_failover", m{"vm": "web01", "recovery_point": "rp-none"})
	require.Equal(t, CodeNotFound, r.Code, r.Message)
	res := f.ok("sr.cmd.vm.unplanned_failover", m{"vm": "web01", "recovery_point": "rp-web01-1", "shutdown_source": true, "command_id": "uf-1"})
	v := f.vm("web01")
	require.Equal(t, events.UnplannedFailoverInProgress, v.State)
	require.Equal(t, "rp-web01-1", v.Failover.Data.RecoveryPoint)

	// Needs nothing from the source: the recovery host serves the point.
	f.agent("hv11", agentproto.VerbFailoverReady, m{"vm": "web01", "epoch": 2, "disks": disks("web01", "hv11", "")})
	v = f.vm("web01")
	require.Equal(t, events.FailoverCommitPending, v.State)
	require.Equal(t, "rp-web01-1", v.FailoverPoint)
	j := f.job(res.Job, events.JobSucceeded)
	require.Equal(t, "UnplannedFailover", j.Operation)
	// The source, back late, stops best effort: recorded, nothing else moves.
	f.agent("hv01", agentproto.VerbVMStopped, m{"vm": "web01", "epoch": 1})
	require.Equal(t, events.FailoverCommitPending, f.vm("web01").State)

	f.ok("sr.cmd.vm.change_recovery_point", m{"vm": "web01", "recovery_point": "rp-web01-2"})
	require.Empty(t, f.agent("hv11", agentproto.VerbFailoverReady, m{"vm": "web01", "epoch": 2, "recovery_point": "rp-web01-2", "disks": disks("web01", "hv11", "")}).Seqs)
	f.ok("sr.cmd.vm.commit", m{"vm": "web01"})
	require.Equal(t, events.FailoverCommittedState, f.vm("web01").State, "no reverse by itself after an unplanned failover")

	// The fenced former source reports its divergence once.
	f.agent("hv01", agentproto.VerbDivergence, m{"vm": "web01", "epoch": 1, "blocks": 12, "aside_images": m{"disk0": "/data/aside/web01/1/disk0.img"}})
	require.Empty(t, f.agent("hv01", agentproto.VerbDivergence, m{"vm": "web01", "epoch": 1, "blocks": 12}).Seqs)
	f.agentRefused("hv11", agentproto.VerbDivergence, m{"vm": "web01", "epoch": 1, "blocks": 1}, CodeInvalidArgument)

	rev := f.ok("sr.cmd.vm.reverse", m{"vm": "web01", "command_id": "rev-1"})
	v = f.vm("web01")
	require.True(t, v.ReverseResync)
	f.agent("hv11", agentproto.VerbResyncProgress, m{"vm": "web01", "done_bytes": 10, "total_bytes": 20, "sent_bytes": 1})
	f.agent("hv11", agentproto.VerbResyncCompleted, m{"vm": "web01", "sent_bytes": 2})
	v = f.vm("web01")
	require.Equal(t, events.Protected, v.State)
	j = f.job(rev.Job, events.JobSucceeded)
	require.Equal(t, []string{"reverse_replication_started", "resync_progress", "resync_completed", "reverse_replication_completed"}, stepNames(j))
}

func TestRacingPlannedAndUnplanned(t *testing.T) {
	t.Parallel()
	f := mustStartPM(t, PMConfig{})
	f.buildFabric()
	f.protect("web01")
	f.moreInstances(1)
	var wg sync.WaitGroup
	replies := make([]reply, 2)
	for i, verb := range []string{"planned_failover", "unplanned_failover"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			replies[i] = f.request("sr.cmd.vm."+verb, m{"vm": "web01"})
		}()
	}
	wg.Wait()
	wins := 0
	for _, r := range replies {
		if r.Code == "" {
			wins++
			continue
		}
		require.Contains(t, []string{CodeInvalidState, CodeConflict}, r.Code, r.Message)
	}
	require.Equal(t, 1, wins, "one operator wins")
	require.Equal(t, 1, f.count(events.VMAgg("web01"), events.FailoverStarted))
}

func TestTestFailoverAndCleanup(t *testing.T) {
	t.Parallel()
	f := mustStartPM(t, PMConfig{})
	f.buildFabric()
	f.protect("web01")
	res := f.ok("sr.cmd.vm.test_failover", m{"vm": "web01", "network": "isolated", "command_id": "tf-1"})
	require.Equal(t, "tf-1", res.Job)
	f.agentRefused("hv01", agentproto.VerbTestFailoverReady, m{"vm": "web01", "disks": disks("web01", "hv01", "-test")}, CodeUnauthorized)
	f.agent("hv11", agentproto.VerbTestFailoverReady, m{"vm": "web01", "job": "tf-1", "disks": disks("web01", "hv11", "-test")})
	v := f.vm("web01")
	require.Equal(t, events.TestCompleted, v.TestState)
	require.Equal(t, events.Protected, v.State, "replication goes on")
	require.Contains(t, v.Images["disk0"], events.DiskImage{Host: "hv11", Role: events.DiskRoleTest,
		Image: "/data/hv11/web01/disk0-test.img", NBDURL: "nbd+unix:///web01-disk0-test?socket=/data/hv11/nbd.sock", Epoch: 1})
	j := f.job("tf-1", events.JobSucceeded)
	require.Equal(t, "TestFailover", j.Operation)
	f.point("web01", "hv11", "rp-web01-2", 2, 1)

	r := f.request("sr.cmd.vm.test_failover", m{"vm": "web01"})
	require.Equal(t, CodeInvalidState, r.Code, "one test at a time")
	cl := f.ok("sr.cmd.vm.test_cleanup", m{"vm": "web01", "command_id": "tc-1"})
	f.agent("hv11", agentproto.VerbTestCleanupDone, m{"vm": "web01"})
	require.Equal(t, events.TestNone, f.vm("web01").TestState)
	f.job(cl.Job, events.JobSucceeded)
}

func TestTestFailoverTimeout(t *testing.T) {
	t.Parallel()
	f := mustStartPM(t, PMConfig{FailoverTimeout: 200 * time.Millisecond})
	f.buildFabric()
	f.protect("web01")
	f.ok("sr.cmd.vm.test_failover", m{"vm": "web01", "command_id": "tf-t"})
	f.waitVM("web01", "test back to None", func(v vmView) bool { return v.TestState == events.TestNone })
	require.Equal(t, events.Protected, f.vm("web01").State)
	j := f.job("tf-t", events.JobFailed)
	require.Contains(t, j.Errors[0], "test failover failed at ready: timeout")
}

func TestResyncReports(t *testing.T) {
	t.Parallel()
	f := mustStartPM(t, PMConfig{})
	f.buildFabric()
	f.protect("web01")
	f.agent("hv01", agentproto.VerbError, m{"vm": "web01", "code": agentproto.CodeResyncRequired, "message": "log lost"})
	res := f.ok("sr.cmd.vm.resync", m{"vm": "web01"})
	f.agent("hv01", agentproto.VerbResyncProgress, m{"vm": "web01", "done_bytes": 1, "total_bytes": 4, "sent_bytes": 1})
	f.agentRefused("hv01", agentproto.VerbResyncProgress, m{"vm": "web01", "done_bytes": 5, "total_bytes": 4}, CodeInvalidArgument)
	f.agent("hv01", agentproto.VerbResyncCompleted, m{"vm": "web01", "sent_bytes": 1})
	require.Empty(t, f.agent("hv01", agentproto.VerbResyncCompleted, m{"vm": "web01", "sent_bytes": 1}).Seqs)
	require.Equal(t, events.Protected, f.vm("web01").State)
	f.job(res.Job, events.JobSucceeded)
}

func TestPlannedFailoverVerifyFailed(t *testing.T) {
	t.Parallel()
	f := mustStartPM(t, PMConfig{})
	f.buildFabric()
	f.protect("web01")
	f.ok("sr.cmd.vm.planned_failover", m{"vm": "web01", "command_id": "pf-v"})
	f.agent("hv01", agentproto.VerbVMStopped, m{"vm": "web01", "epoch": 1, "final_cycle": 3, "roots": m{"disk0": "aa"}})
	f.agent("hv11", agentproto.VerbError, m{"vm": "web01", "code": agentproto.CodeVerifyFailed, "message": "disk0 root bb, source aa"})
	f.waitVM("web01", "PlannedFailoverFailed", func(v vmView) bool { return v.State == events.PlannedFailoverFailed })
	j := f.job("pf-v", events.JobFailed)
	require.Contains(t, j.Errors, "planned failover failed at verify: disk0 root bb, source aa")
}

func TestPlannedFailoverFailsWhenTheSourceIsLost(t *testing.T) {
	t.Parallel()
	f := mustStartPM(t, PMConfig{})
	f.buildFabric()
	f.protect("web01")
	f.ok("sr.cmd.vm.planned_failover", m{"vm": "web01", "command_id": "pf-l"})
	recs, err := f.log.Load(context.Background(), events.HostAgg("hv01"))
	require.NoError(t, err)
	_, err = f.log.Append(context.Background(), events.HostAgg("hv01"), lastSeq(recs),
		events.Meta{At: time.Now().UTC(), CommandID: "sweep-1", Actor: "control"}, events.HostUnreachableData{Name: "hv01", LastSeen: time.Now().UTC()})
	require.NoError(t, err)
	f.waitVM("web01", "PlannedFailoverFailed", func(v vmView) bool { return v.State == events.PlannedFailoverFailed })
	j := f.job("pf-l", events.JobFailed)
	require.Contains(t, j.Errors[0], "source host hv01 is unreachable")
}

func TestProcessManagerRestartKeepsDeadlines(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f := mustStartPM(t, PMConfig{Dir: dir, FailoverTimeout: time.Hour})
	f.buildFabric()
	f.protect("web01")
	f.ok("sr.cmd.vm.unplanned_failover", m{"vm": "web01", "command_id": "uf-r"})
	seq := f.lastSeq()
	require.Eventually(t, func() bool {
		st, err := NewPM(f.log, PMConfig{Dir: dir}, zerolog.Nop()).loadCheckpoint()
		return err == nil && st.Seq >= seq
	}, 10*time.Second, 5*time.Millisecond, "checkpoint written")
	require.NoError(t, f.pm.Close(context.Background()))

	st, err := NewPM(f.log, PMConfig{Dir: dir}, zerolog.Nop()).loadCheckpoint()
	require.NoError(t, err)
	require.Contains(t, st.Deadlines, "failover/web01")

	// A new manager on the same checkpoint with a shorter timeout: the
	// deadline kept is the one recorded (an hour), not re-derived from the log.
	pm := f.startPM(PMConfig{Dir: dir, FailoverTimeout: time.Millisecond})
	require.Never(t, func() bool { return f.vm("web01").State == events.UnplannedFailoverFailed }, 200*time.Millisecond, 20*time.Millisecond)
	require.NoError(t, pm.Close(context.Background()))

	// Without the checkpoint the log is folded again and the deadline re-derived.
	f.startPM(PMConfig{FailoverTimeout: time.Millisecond})
	f.waitVM("web01", "UnplannedFailoverFailed", func(v vmView) bool { return v.State == events.UnplannedFailoverFailed })
	f.job("uf-r", events.JobFailed)
	require.Equal(t, 1, f.count(events.VMAgg("web01"), events.FailoverFailed))
}

func TestFailoverReportsRefuseBadInput(t *testing.T) {
	t.Parallel()
	f := mustStartPM(t, PMConfig{})
	f.buildFabric()
	f.protect("web01")
	before := f.lastSeq()
	f.agentRefused("hv11", agentproto.VerbFailoverReady, []byte("not json"), CodeInvalidArgument)
	f.agentRefused("hv11", agentproto.VerbFailoverReady, m{"vm": "a b"}, CodeInvalidArgument)
	f.agentRefused("hv11", agentproto.VerbFailoverReady, m{"vm": "web01", "job": "a.b"}, CodeInvalidArgument)
	f.agentRefused("hv11", agentproto.VerbFailoverReady, m{"vm": "nope", "epoch": 2}, CodeNotFound)
	f.agentRefused("hv11", agentproto.VerbTestCleanupDone, m{"vm": "web01", "extra": 1, "epoch": "x"}, CodeInvalidArgument)
	f.agentRefused("hv11", agentproto.VerbVMStopped, m{"vm": "web01", "epoch": 1}, CodeInvalidState)
	require.Equal(t, before, f.lastSeq(), "refused reports append nothing")
	_, err := NewFailoverReports(f.log, nil, zerolog.Nop()).Handle(context.Background(), "hv11", "nonsense", []byte(`{"vm":"web01"}`))
	require.ErrorIs(t, err, events.ErrInvalidArgument)
}

// TestProcessManagerCheckpointFormat: the checkpoint carries its format; a
// file without one is format 1 and read; a file of a newer format is not
// read (the log is folded from the start instead).
func TestProcessManagerCheckpointFormat(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pm := NewPM(events.NewMemLog(), PMConfig{Dir: dir}, zerolog.Nop())
	require.NoError(t, pm.saveCheckpoint(7))
	raw, err := os.ReadFile(filepath.Join(dir, pmCheckpointFile))
	require.NoError(t, err)
	require.Contains(t, string(raw), `"format":2`)

	write := func(body string) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, pmCheckpointFile), []byte(body), 0o644))
	}
	write(`{"seq":7,"deadlines":{},"reversing":{},"jobs":{}}`)
	st, err := pm.loadCheckpoint()
	require.NoError(t, err)
	require.Equal(t, uint64(7), st.Seq, "no format: format 1, read")

	write(`{"format":3,"seq":7,"deadlines":{"x/web01":{}},"reversing":{},"jobs":{}}`)
	st, err = pm.loadCheckpoint()
	require.NoError(t, err)
	require.Zero(t, st.Seq, "a newer format is not read: the log is folded from the start")
	require.Empty(t, st.Deadlines)
}
