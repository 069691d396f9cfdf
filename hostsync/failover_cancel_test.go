package hostsync_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/hostsync"
	"github.com/siterecovery/siterecovery/hostsync/nbd"
)

// waitServed waits until host serves web01's disk with the content want.
func (w *world) waitServed(host string, want []byte, what string) {
	w.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if got, err := tryReadExport(filepath.Join(w.dirs[host], "nbd.sock"), hostsync.ExportName("web01", "d0")); err == nil && bytes.Equal(want, got) {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("%s: %s does not serve the expected bytes", what, host)
		}
		time.Sleep(50 * time.Millisecond) // polling the export for the expected content
	}
}

// tryReadExport reads a whole export, or fails (the export went away).
func tryReadExport(sock, export string) ([]byte, error) {
	c, err := nbd.Dial("unix", sock, export)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	out := make([]byte, c.Size())
	for off := int64(0); off < c.Size(); off += 1 << 20 {
		if _, err := c.ReadAt(out[off:min(off+1<<20, c.Size())], off); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func TestCancelPlannedFailoverGoesBackToTheOldDirection(t *testing.T) {
	t.Parallel()
	w := protectFailover(t)
	watch := watchSplitBrain(t, w.agents["hv01"], w.agents["hv11"])
	w.cmd("sr.cmd.vm.planned_failover", m{"vm": "web01"})
	w.waitVM(20*time.Second, "failed over to hv11", active("hv11", 2, events.FailoverCommitPending))
	w.qemuAt("hv11", "write -P 0x71 1M 64k") // dropped by the cancel

	w.cmd("sr.cmd.vm.cancel_failover", m{"vm": "web01"})
	w.waitVM(10*time.Second, "back on hv01", active("hv01", 3, events.Protected))
	w.waitServed("hv01", w.imageOf("hv01", "vms/web01/d0.img"), "after cancel")
	require.NotContains(t, w.agents["hv11"].Exports(), hostsync.ExportName("web01", "d0"))

	w.qemuAt("hv01", "write -P 0x72 2M 64k")
	mark := time.Now()
	rp := w.latestPointAfter(mark, 15*time.Second)
	require.Equal(t, uint64(3), rp.Epoch)
	requireSameBytes(t, w.imageOf("hv01", "vms/web01/d0.img"), w.imageOf("hv11", "replicas/web01/d0.img"), "replica after cancel")
	watch.end()
	require.Zero(t, watch.both.Load(), "web01 was served at both sites at once")
}

func TestUnplannedFailoverChangeRecoveryPointAndCancel(t *testing.T) {
	t.Parallel()
	w := mustFailoverWorld(t)
	w.fabric(nil)
	record := filepath.Join(t.TempDir(), "driver.log")
	driver := func(cfg *hostsync.AgentConfig) {
		cfg.VMStartCommand = fmt.Sprintf(`echo "start $SR_VM $SR_NBD_URLS [$SR_NETWORKS]" >> %s`, record)
		cfg.VMStopCommand = fmt.Sprintf(`echo "stop $SR_VM" >> %s`, record)
	}
	w.startAgent("hv01", driver)
	w.startAgent("hv11", driver)
	w.cmd("sr.cmd.vm.enable", m{"vm": "web01"})
	w.waitVM(20*time.Second, "protected", func(vm events.VM) bool { return vm.State == events.Protected && len(vm.RecoveryPoints) > 0 })

	w.qemuAt("hv01", "write -P 0x41 1M 64k")
	mark := time.Now()
	first := w.latestPointAfter(mark, 10*time.Second)
	atFirst := w.imageOf("hv01", "vms/web01/d0.img")
	w.qemuAt("hv01", "write -P 0x42 3M 64k")
	mark = time.Now()
	second := w.latestPointAfter(mark, 10*time.Second)
	atSecond := w.imageOf("hv01", "vms/web01/d0.img")

	w.cmd("sr.cmd.vm.unplanned_failover", m{"vm": "web01", "recovery_point": first.ID, "shutdown_source": true})
	w.waitVM(20*time.Second, "failed over to hv11", active("hv11", 2, events.FailoverCommitPending))
	requireSameBytes(t, atFirst, w.readExport("hv11", hostsync.ExportName("web01", "d0")), "served at the first point")
	require.NotContains(t, w.agents["hv01"].Exports(), hostsync.ExportName("web01", "d0"), "shutdown_source fences the source")

	w.cmd("sr.cmd.vm.change_recovery_point", m{"vm": "web01", "recovery_point": second.ID})
	w.waitServed("hv11", atSecond, "after change_recovery_point")

	w.cmd("sr.cmd.vm.cancel_failover", m{"vm": "web01"})
	w.waitVM(10*time.Second, "back on hv01", active("hv01", 3, events.Protected))
	w.waitServed("hv01", atSecond, "after cancel")
	w.qemuAt("hv01", "write -P 0x43 5M 64k")
	mark = time.Now()
	w.latestPointAfter(mark, 15*time.Second)
	requireSameBytes(t, w.imageOf("hv01", "vms/web01/d0.img"), w.imageOf("hv11", "replicas/web01/d0.img"), "replica after cancel")

	log := string(readFile(t, record))
	require.Contains(t, log, "start web01 nbd+unix:///web01.d0?socket="+filepath.Join(w.dirs["hv01"], "nbd.sock"))
	require.Contains(t, log, "start web01 nbd+unix:///web01.d0?socket="+filepath.Join(w.dirs["hv11"], "nbd.sock"))
	require.GreaterOrEqual(t, strings.Count(log, "stop web01"), 2, log)
	_, err := os.Stat(filepath.Join(w.dirs["hv11"], "vms", "web01", "d0.img"))
	require.ErrorIs(t, err, os.ErrNotExist, "the cancelled failover's disk is dropped")
}
