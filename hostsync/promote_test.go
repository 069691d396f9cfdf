package hostsync_test

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/hostsync"
	"github.com/siterecovery/siterecovery/hostsync/hashtree"
)

// The source's hash trees survive an agent restart (saved beside the
// images) and still prove the replica equal at the final cycle.
func TestPlannedFailoverAfterSourceRestart(t *testing.T) {
	t.Parallel()
	w := protectFailover(t)
	w.qemuAt("hv01", "write -P 0x13 1M 64k")
	mark := time.Now()
	w.latestPointAfter(mark, 10*time.Second)
	tree := filepath.Join(w.dirs["hv01"], "vms", "web01", "d0.img.hashtree")
	w.waitVM(5*time.Second, "source tree saved", func(events.VM) bool {
		_, stamp, err := hashtree.Load(tree)
		return err == nil && stamp != ""
	})
	w.stopAgent("hv01")
	a := w.startAgent("hv01")
	w.waitVM(10*time.Second, "served again", func(events.VM) bool {
		return slices.Contains(a.Exports(), hostsync.ExportName("web01", "d0"))
	})
	w.qemuAt("hv01", "write -P 0x14 2M 64k", "write -z 1M 4k")
	w.cmd("sr.cmd.vm.planned_failover", m{"vm": "web01"})
	w.waitVM(20*time.Second, "failed over to hv11", active("hv11", 2, events.FailoverCommitPending))
	requireSameBytes(t, w.imageOf("hv01", "vms/web01/d0.img"), w.readExport("hv11", hostsync.ExportName("web01", "d0")), "served after failover")
	recs, err := w.log.Load(w.ctx, events.VMAgg("web01"))
	require.NoError(t, err)
	for _, r := range recs {
		if d, ok := r.Data.(events.SourceStoppedData); ok {
			require.Len(t, d.Roots, 1)
		}
	}
}
