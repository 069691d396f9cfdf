package test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestFaultNATSRestartDuringReplication kills serve with SIGKILL (its
// embedded NATS server goes down with it, mid-publish, mid-fetch) and
// starts it again on the same data while a writer keeps writing through
// the source agent's NBD export. The agents reconnect and catch up: the
// recovery point cycles continue without a hole, and once the writes stop
// the replica equals every acknowledged write.
func TestFaultNATSRestartDuringReplication(t *testing.T) {
	w := protectedWorld(t, worldOpts{})
	stop := w.disk.writeLoop(150 * time.Millisecond)
	defer stop()
	w.p.waitVM(vmName, 20*time.Second, "points while writing", func(v vmView) bool { return len(v.RecoveryPoints) >= 3 })

	w.srv.kill()
	down := time.Now()
	ackedBefore := w.disk.acked()
	// The source keeps tracking writes while NATS is away: its disk is
	// served by the agent, not by the control plane.
	// Down for more than two copy intervals: cycles close while it is away.
	require.Eventually(t, func() bool { return w.disk.acked() >= ackedBefore+5 && time.Since(down) > 5*time.Second },
		20*time.Second, 50*time.Millisecond, "writes go on while NATS is down")
	w.srv = startServe(t, w.srv.data, w.srv.port)
	t.Logf("NATS away for %s", time.Since(down).Round(time.Millisecond))

	w.p.waitVM(vmName, 30*time.Second, "a point closed after the restart", pointAfter(time.Now()))
	require.NoError(t, stop(), "writes through NBD")
	v := w.requireReplicaEqualsSource(30 * time.Second)
	require.Equal(t, "Protected", v.ProtectionState)
	cycles := requireNoGap(t, v)
	t.Logf("%d writes acknowledged; recovery points of cycles %d to %d, no hole", w.disk.acked(), cycles[0], cycles[len(cycles)-1])
}
