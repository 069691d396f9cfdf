package test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
)

// The planned failover right after a start (issue 16): the source host's
// reachability is unknown until the control plane has heard from it, and
// a failover whose step answers after its deadline ends in a state that
// says what is true.

// errHeld is what a report hook returns for a report it withholds.
var errHeld = errors.New("withheld by the test")

// startRounds is how often each start is played (2 with -short).
const startRounds = 10

// TestPlannedFailoverRightAfterStart: a control plane and the agents
// started together, the planned failover issued as soon as web01 is
// Protected completes every time, with the bytes on the recovery host: when
// the agents' first heartbeats came before their hosts were registered,
// when the source's heartbeats are withheld until the command (its
// reachability still unknown), and with the control plane restarted just
// before the command.
func TestPlannedFailoverRightAfterStart(t *testing.T) {
	rounds := startRounds
	if testing.Short() {
		rounds = 2
	}
	for _, c := range []struct {
		name             string
		unheard, restart bool
	}{
		{"started together", false, false},
		{"source not heard yet", true, false},
		{"control plane restarted", false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			for i := range rounds {
				if !t.Run(fmt.Sprintf("round %d", i+1), func(t *testing.T) { plannedRightAfterStart(t, c.unheard, c.restart) }) {
					return
				}
			}
		})
	}
}

func plannedRightAfterStart(t *testing.T, unheard, restart bool) {
	var hold atomic.Bool
	hold.Store(unheard)
	heartbeats := func(_ context.Context, verb string) error {
		if verb == "heartbeat" && hold.Load() {
			return errHeld
		}
		return nil
	}
	w := mustInprocWorld(t, inprocOpts{hooks: map[string]func(context.Context, string) error{"hv01": heartbeats}})
	d := w.startedTogether()
	w.protect()
	if restart {
		w.restartPlane()
	}
	if unheard {
		require.Equal(t, events.ReachabilityUnknown, w.reachability("hv01"), "hv01 has not been heard from")
	}
	start := time.Now()
	job := w.command("planned_failover")
	hold.Store(false)
	j := w.waitJobEnded(job, 60*time.Second)
	require.Equal(t, events.JobSucceeded, j.State, "planned failover job: %v", j.Errors)
	state, epoch, host := w.vmAt()
	require.Equal(t, []any{string(events.FailoverCommitPending), uint64(2), "hv02"}, []any{state, epoch, host})
	requireSameBytes(t, d.model, w.readExport("hv02", d), "web01 served on hv02")
	require.Equal(t, []string{"hv02"}, w.servers(d), "hosts serving web01")
	t.Logf("planned failover completed in %s", durationMS(time.Since(start)))
}

// TestPlannedFailoverLateStop: the source's vm_stopped is held back until
// the failover's deadline failed it at stop_source, then sent. The late
// answer is recorded under the failed job, the VM stays
// PlannedFailoverFailed at its epoch and nothing serves it; then a planned
// failover again, or a cancel, completes with the bytes checked.
func TestPlannedFailoverLateStop(t *testing.T) {
	for _, next := range []string{"planned_failover", "cancel_failover"} {
		t.Run(next, func(t *testing.T) { lateStop(t, next) })
	}
}

func lateStop(t *testing.T, next string) {
	held := newHeldReport("vm_stopped")
	w := mustInprocWorld(t, inprocOpts{failoverTimeout: 3 * time.Second,
		hooks: map[string]func(context.Context, string) error{"hv01": held.hook}})
	d := w.startedTogether()
	w.protect()
	w.p.waitVM(vmName, 30*time.Second, "a recovery point", func(v vmView) bool { return len(v.RecoveryPoints) > 0 })
	w.write("hv01", d, 64<<10, []int64{2 << 20}, []byte{0x44}) // after protection: the final cycle carries it

	job := w.command("planned_failover")
	held.waitHolding(t, 30*time.Second)
	j := w.waitJobEnded(job, 30*time.Second)
	require.Equal(t, events.JobFailed, j.State)
	require.Contains(t, j.Errors[0], "planned failover failed at stop_source: timeout")
	held.release()
	j = w.waitJob(job, 30*time.Second, "the late source_stopped recorded", func(j inprocJob) bool {
		_, ok := j.step("source_stopped")
		return ok
	})
	w.requireLateStopAgrees(j, d)
	t.Logf("failed job after the late answer: %+v", j)

	switch next {
	case "planned_failover":
		retry := w.command("planned_failover")
		j := w.waitJobEnded(retry, 60*time.Second)
		require.Equal(t, events.JobSucceeded, j.State, "the retry: %v", j.Errors)
		state, epoch, host := w.vmAt()
		require.Equal(t, []any{string(events.FailoverCommitPending), uint64(2), "hv02"}, []any{state, epoch, host})
		requireSameBytes(t, d.model, w.readExport("hv02", d), "web01 served on hv02 after the retry: no write lost")
		require.Equal(t, []string{"hv02"}, w.servers(d), "hosts serving web01")
	case "cancel_failover":
		cancel := w.command("cancel_failover")
		require.Equal(t, events.JobSucceeded, w.waitJobEnded(cancel, 30*time.Second).State)
		w.requireBackOnTheSource(d)
	}
}

// requireLateStopAgrees: after the late vm_stopped, the job, the VM and
// the hosts' exports all say the failover failed and the source stopped.
func (w *inprocWorld) requireLateStopAgrees(j inprocJob, d *nbdDisk) {
	w.t.Helper()
	t := w.t
	require.Equal(t, events.JobFailed, j.State, "the failure stays: the failover is over")
	st, _ := j.step("source_stopped")
	require.Contains(t, st.Detail, "after the failover failed")
	state, epoch, host := w.vmAt()
	require.Equal(t, []any{string(events.PlannedFailoverFailed), uint64(1), "hv01"}, []any{state, epoch, host})
	v, ok := w.p.vm(vmName)
	require.True(t, ok)
	require.Empty(t, v.Disks[0].NBDURL, "the VM view names no address: the source is stopped")
	require.Empty(t, w.servers(d), "nothing serves web01")
}

// requireBackOnTheSource: after a cancel the source serves web01 at the
// next epoch with every write, and replicates again: after one more write,
// the replica equals the source at the next point.
func (w *inprocWorld) requireBackOnTheSource(d *nbdDisk) {
	w.t.Helper()
	t := w.t
	state, epoch, host := w.vmAt()
	require.Equal(t, []any{string(events.Protected), uint64(2), "hv01"}, []any{state, epoch, host})
	w.p.waitVM(vmName, 30*time.Second, "served on hv01 again", func(v vmView) bool { return v.Disks[0].NBDURL != "" })
	requireSameBytes(t, d.model, w.readExport("hv01", d), "web01 served on hv01 after the cancel")
	require.Equal(t, []string{"hv01"}, w.servers(d), "hosts serving web01")
	w.write("hv01", d, 64<<10, []int64{3 << 20}, []byte{0x55})
	mark := time.Now()
	w.p.waitVM(vmName, 60*time.Second, "a recovery point after the last write", pointAfter(mark))
	requireSameBytes(t, d.model, readImage(t, filepath.Join(w.dirs["hv02"], "replicas", vmName, diskName+".img")), "replica after the cancel")
}

// vmAt is web01's protection state, epoch and active host.
func (w *inprocWorld) vmAt() (string, uint64, string) {
	w.t.Helper()
	var v struct {
		State string `json:"protection_state"`
		Epoch uint64 `json:"epoch"`
		Host  string `json:"host"`
	}
	require.NoError(w.t, json.Unmarshal(w.p.must("sr.q.vm", obj{"vm": vmName}), &v))
	return v.State, v.Epoch, v.Host
}

// reachability is what the hosts query says of host.
func (w *inprocWorld) reachability(host string) events.Reachability {
	w.t.Helper()
	var hosts []struct {
		Name         string              `json:"name"`
		Reachability events.Reachability `json:"reachability"`
	}
	require.NoError(w.t, json.Unmarshal(w.p.must("sr.q.hosts", obj{}), &hosts))
	for _, h := range hosts {
		if h.Name == host {
			return h.Reachability
		}
	}
	w.t.Fatalf("host %s not in the hosts query", host)
	return ""
}

// heldReport holds the first report of one verb until released, as a
// report in flight past a deadline would arrive.
type heldReport struct {
	verb     string
	once     sync.Once
	holding  chan struct{}
	released chan struct{}
}

func newHeldReport(verb string) *heldReport {
	return &heldReport{verb: verb, holding: make(chan struct{}), released: make(chan struct{})}
}

// hook is the agent's ReportHook.
func (h *heldReport) hook(ctx context.Context, verb string) error {
	if verb != h.verb {
		return nil
	}
	first := false
	h.once.Do(func() { first = true; close(h.holding) })
	if !first {
		return nil
	}
	select {
	case <-h.released:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (h *heldReport) waitHolding(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case <-h.holding:
	case <-time.After(d):
		t.Fatalf("no %s report within %s", h.verb, d)
	}
}

func (h *heldReport) release() { close(h.released) }
