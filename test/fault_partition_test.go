package test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

// TestFaultRecoverySiteCutOff cuts the recovery host off for several copy
// intervals (its agent stopped with SIGSTOP: its connection stays open and
// says nothing) while the source keeps writing. During the gap the RPO
// rises past the policy's threshold and the source's cycles pile up in the
// secondary site's delta stream; after it they are applied with no
// recovery point lost and the replica equals every acknowledged write.
// The VM's health leaves Normal during the gap (the health monitor raises
// Warning on a sustained RPO breach).
func TestFaultRecoverySiteCutOff(t *testing.T) {
	w := protectedWorld(t, worldOpts{copyFrequency: "2s", rpoThreshold: "4s"})
	stop := w.disk.writeLoop(150 * time.Millisecond)
	defer stop()
	w.p.waitVM(vmName, 20*time.Second, "points while writing", func(v vmView) bool { return len(v.RecoveryPoints) >= 2 })

	w.rcv.pause()
	cut := time.Now()
	healths := map[string]bool{}
	w.p.waitVM(vmName, 30*time.Second, "RPO past the threshold and health raised while the recovery site is cut off", func(v vmView) bool {
		healths[v.Health] = true
		return v.RPOSeconds != nil && *v.RPOSeconds >= 8 && v.Health != "Normal"
	})
	piled := deltaBacklog(t, w.p)
	require.Positive(t, piled, "cycles pile up in SR_DELTA_secondary while the recovery host is away")
	w.rcv.resume()
	t.Logf("recovery host cut off for %s; %d batches waited in the stream; health seen during the gap: %v",
		time.Since(cut).Round(time.Millisecond), piled, keys(healths))

	w.p.waitVM(vmName, 30*time.Second, "RPO back under the threshold", func(v vmView) bool {
		return v.RPOSeconds != nil && *v.RPOSeconds < 4
	})
	require.NoError(t, stop(), "writes through NBD")
	v := w.requireReplicaEqualsSource(30 * time.Second)
	cycles := requireNoGap(t, v)
	t.Logf("%d writes acknowledged; recovery points of cycles %d to %d, no hole; health now %s",
		w.disk.acked(), cycles[0], cycles[len(cycles)-1], v.Health)
}

// deltaBacklog is the number of batches waiting in SR_DELTA_secondary.
func deltaBacklog(t testing.TB, p *plane) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js, err := jetstream.New(p.nc)
	require.NoError(t, err)
	s, err := js.Stream(ctx, "SR_DELTA_secondary")
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	return info.State.Msgs
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
