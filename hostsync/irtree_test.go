package hostsync_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/hostsync"
	"github.com/siterecovery/siterecovery/hostsync/nbd"
)

// Writes all through the initial replication: the source's kept tree is
// made from the chunks it read plus the writes folded at the first close
// (irtree.go), so the first point carries the source's exact roots, the
// recovery host agrees with them (the point is recorded, no resync), and
// after the writes stop a point equals the source byte for byte.
func TestAgentInitialReplicationUnderWritesKeepsRootsExact(t *testing.T) {
	w := mustWorld(t)
	w.fabric(nil)
	w.startAgent("hv01")
	w.startAgent("hv11")
	w.waitSourceServed()
	c, err := nbd.Dial("unix", filepath.Join(w.dirs["hv01"], "nbd.sock"), hostsync.ExportName("web01", "d0"))
	require.NoError(t, err)
	defer c.Close()
	block := make([]byte, 8<<10)
	write := func(i int) {
		block[0], block[1] = byte(i), byte(i>>8)
		require.NoError(t, c.WriteAt(block, int64(i*37%(diskSize/len(block)))*int64(len(block)), false))
	}
	for i := range 64 { // data for the chunks to carry
		write(i)
	}
	w.cmd("sr.cmd.vm.enable", m{"vm": "web01"})
	for i := 64; ; i++ { // and writes until the first point
		write(i)
		vm := w.vm()
		require.NotEqual(t, events.ResyncRequiredState, vm.State, "integrity check failed")
		if vm.State == events.Protected && len(vm.RecoveryPoints) > 0 {
			break
		}
		require.Less(t, i, 1_000_000, "no first point")
	}
	require.NoError(t, c.Flush())
	end := time.Now()
	p := w.latestPointAfter(end, 15*time.Second)
	require.Equal(t, imageTreeRoot(t, w.sourceImage()), p.Roots["d0"], "the point carries the source's roots")
	requireSameBytes(t, readFile(t, w.sourceImage()), readFile(t, w.replicaImage()), "replica after the writes")
	require.Equal(t, events.Protected, w.vm().State)
}
