package hostsync_test

import (
	"bytes"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/agentproto"
	"github.com/siterecovery/siterecovery/hostsync/batch"
	"github.com/siterecovery/siterecovery/hostsync/cycle"
)

// errorCodes lists the codes of the VM's replication_error events.
func (w *world) errorCodes() map[string]int {
	recs, err := w.log.Load(w.ctx, events.VMAgg("web01"))
	require.NoError(w.t, err)
	codes := map[string]int{}
	for _, r := range recs {
		if e, ok := r.Data.(events.ReplicationErrorData); ok {
			codes[e.Code]++
		}
	}
	return codes
}

func TestAgentRefusesGarbageAndStaleEpochBatches(t *testing.T) {
	w := protect(t, nil)
	base := w.latestPointAfter(time.Now(), 10*time.Second)
	before := readFile(t, w.replicaImage())
	points := len(w.vm().RecoveryPoints)

	subject := agentproto.DeltaSubject("secondary", "hv01", "web01", 1)
	garbage := []byte("this is not a delta batch at all, but it is on the subject")
	_, err := w.js().Publish(w.ctx, subject, garbage)
	require.NoError(t, err)

	// A well-formed batch that would overwrite the disk, from epoch 0 (on
	// epoch 0's subject and on the current one), must never be applied.
	stale, err := batch.Encode(batch.Batch{
		VM: "web01", Epoch: 0, Cycle: base.Cycle + 1, Last: true, ClosedAt: time.Now(),
		Extents: []cycle.Extent{{Disk: "d0", Offset: 0, Length: 4096, Data: make([]byte, 4096)}},
	})
	require.NoError(t, err)
	_, err = w.js().Publish(w.ctx, agentproto.DeltaSubject("secondary", "hv01", "web01", 0), stale)
	require.NoError(t, err)
	_, err = w.js().Publish(w.ctx, subject, stale)
	require.NoError(t, err)
	// A corrupt copy of a good batch (one bit flipped).
	good, err := batch.Encode(batch.Batch{VM: "web01", Epoch: 1, Cycle: base.Cycle + 1, Last: true, ClosedAt: time.Now(),
		Extents: []cycle.Extent{{Disk: "d0", Offset: 0, Length: 4096, Data: make([]byte, 4096)}}})
	require.NoError(t, err)
	good[len(good)/2] ^= 0x40
	_, err = w.js().Publish(w.ctx, subject, good)
	require.NoError(t, err)

	w.waitVM(10*time.Second, "bad batches reported", func(vm events.VM) bool {
		c := w.errorCodes()
		return c[agentproto.CodeBadBatch] > 0 && c[agentproto.CodeStaleEpoch] > 0 && vm.Health == events.HealthCritical
	})
	require.Greater(t, len(w.vm().RecoveryPoints), points-1)
	require.Equal(t, before[:4096], readFile(t, w.replicaImage())[:4096], "nothing of the refused batches reached the replica")

	// Replication goes on: both agents are alive and the replica follows.
	s := w.randomRound(rand.New(rand.NewPCG(3, 4)), 0)
	w.latestPointAfter(s.end, 10*time.Second)
	requireSameBytes(t, s.data, readFile(t, w.replicaImage()), "replica after the refused batches")
	w.waitVM(5*time.Second, "health back to normal", func(vm events.VM) bool { return vm.Health == events.HealthNormal })
}

func TestAgentPauseResumeAndOverflow(t *testing.T) {
	w := protect(t, nil)
	w.cmd("sr.cmd.vm.pause", m{"vm": "web01"})
	w.waitVM(5*time.Second, "paused", func(vm events.VM) bool { return vm.State == events.Paused })
	w.qemuIO("write -P 0x44 1M 64k")
	time.Sleep(2500 * time.Millisecond) // two copy intervals: nothing may ship while paused
	// Points of cycles closed before the pause may still land; the write
	// made while paused must not.
	require.NotEqual(t, bytes.Repeat([]byte{0x44}, 64<<10), readFile(t, w.replicaImage())[1<<20:1<<20+64<<10], "a write made while paused reached the replica")

	w.cmd("sr.cmd.vm.resume", m{"vm": "web01"})
	w.latestPointAfter(time.Now(), 10*time.Second)
	requireSameBytes(t, readFile(t, w.sourceImage()), readFile(t, w.replicaImage()), "replica after resume")

	// A change log above half the disk while paused: resume ends in
	// ResyncRequired, never in a silent gap.
	w.cmd("sr.cmd.vm.pause", m{"vm": "web01"})
	w.waitVM(5*time.Second, "paused", func(vm events.VM) bool { return vm.State == events.Paused })
	w.qemuIO("write -P 0x55 0 5M")
	w.cmd("sr.cmd.vm.resume", m{"vm": "web01"})
	w.waitVM(10*time.Second, "resync required", func(vm events.VM) bool { return vm.State == events.ResyncRequiredState })
}

func TestAgentStartTimeAndDisable(t *testing.T) {
	start := time.Now().Add(2 * time.Second)
	w := protect(t, m{"delete_replica_on_disable": true, "start_at": start})
	recs, err := w.log.Load(w.ctx, events.VMAgg("web01"))
	require.NoError(t, err)
	for _, r := range recs {
		if r.Type() == events.InitialReplicationStarted {
			require.False(t, r.Meta.At.Before(start), "initial replication started at %s, before the policy's start %s", r.Meta.At, start)
		}
	}
	host, err := w.log.Load(w.ctx, events.HostAgg("hv01"))
	require.NoError(t, err)
	require.Equal(t, events.HostReachable, host[len(host)-1].Type(), "the heartbeat made the host reachable")

	_, err = os.Stat(w.replicaImage())
	require.NoError(t, err)
	w.cmd("sr.cmd.vm.disable", m{"vm": "web01"})
	w.waitVM(10*time.Second, "unprotected", func(vm events.VM) bool { return vm.State == events.Unprotected })
	_, err = os.Stat(w.replicaImage())
	require.ErrorIs(t, err, os.ErrNotExist)
	// The VM is still served on its source, and protecting it again
	// starts over: a new initial replication into a new replica.
	w.qemuIO("write -P 0x66 0 4k")
	w.cmd("sr.cmd.vm.enable", m{"vm": "web01"})
	w.waitVM(15*time.Second, "protected again", func(vm events.VM) bool {
		return vm.State == events.Protected && len(vm.RecoveryPoints) > 0
	})
	requireSameBytes(t, readFile(t, w.sourceImage()), readFile(t, w.replicaImage()), "replica of the second protection")
}

func TestAgentResendsLostCycles(t *testing.T) {
	w := protect(t, nil)
	w.stopAgent("hv11")
	w.qemuIO("write -P 0x99 1M 128k")
	written := time.Now()
	// Wait until the cycle holding the write is in the stream, then lose it
	// (and every batch of the VM) before the recovery host reads it.
	stream, err := w.js().Stream(w.ctx, agentproto.DeltaStream("secondary"))
	require.NoError(t, err)
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := stream.Info(w.ctx)
		require.NoError(t, err)
		if info.State.Msgs > 0 && time.Since(written) > 1500*time.Millisecond {
			break
		}
		require.True(t, time.Now().Before(deadline), "no batch reached the stream")
		time.Sleep(50 * time.Millisecond) // polling the stream's state
	}
	require.NoError(t, stream.Purge(w.ctx))

	// The source notices that nothing is left to deliver while its cycles
	// are unapplied, and sends them again; the gap is never applied over.
	w.startAgent("hv11")
	w.latestPointAfter(written, 45*time.Second) // resend after the hold of a gap (10s) and ResendAfter, under load
	requireSameBytes(t, readFile(t, w.sourceImage()), readFile(t, w.replicaImage()), "replica after the lost cycles were sent again")
}
