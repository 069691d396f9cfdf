package hostsync_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/agentproto"
	"github.com/siterecovery/siterecovery/handlers"
	"github.com/siterecovery/siterecovery/hostsync"
	"github.com/siterecovery/siterecovery/hostsync/nbd"
)

// mustFailoverWorld is the two-site world plus the control plane's
// failover side: the failover report endpoints and a process manager.
func mustFailoverWorld(t testing.TB) *world {
	t.Helper()
	w := mustWorld(t)
	svc, err := micro.AddService(w.nc, micro.Config{Name: "siterecovery-failover", Version: "0.1.0"})
	require.NoError(t, err)
	t.Cleanup(func() { svc.Stop() })
	require.NoError(t, handlers.NewFailoverReports(w.log, nil, w.logger).AddEndpoints(w.ctx, svc))
	pm := handlers.NewPM(w.log, handlers.PMConfig{FailoverTimeout: 30 * time.Second, Tick: 50 * time.Millisecond}, w.logger)
	require.NoError(t, pm.Open(w.ctx))
	t.Cleanup(func() { pm.Close(context.Background()) })
	return w
}

// protectFailover builds the fabric, starts both agents, writes before
// protection and waits until web01 is Protected with a point.
func protectFailover(t testing.TB, mods ...func(*hostsync.AgentConfig)) *world {
	w, _ := protectFailoverChild(t, false, mods...)
	return w
}

// protectFailoverChild is protectFailover with, if child, hv01's agent in a
// child process (killed with SIGKILL by the test).
func protectFailoverChild(t testing.TB, child bool, mods ...func(*hostsync.AgentConfig)) (*world, *exec.Cmd) {
	w := mustFailoverWorld(t)
	w.fabric(nil)
	var cmd *exec.Cmd
	if child {
		cmd = w.startChild("hv01", "")
	} else {
		w.startAgent("hv01", mods...)
	}
	w.startAgent("hv11", mods...)
	w.waitVM(15*time.Second, "source disk served", func(vm events.VM) bool {
		for _, im := range vm.Images["d0"] {
			if im.Role == events.DiskRoleSource && im.NBDURL != "" {
				return true
			}
		}
		return false
	})
	w.qemuAt("hv01", "write -P 0x11 0 1M", "write -P 0x22 5M 64k")
	w.cmd("sr.cmd.vm.enable", m{"vm": "web01"})
	w.waitVM(20*time.Second, "protected with a point", func(vm events.VM) bool {
		return vm.State == events.Protected && len(vm.RecoveryPoints) > 0
	})
	return w, cmd
}

// qemuAt runs qemu-io commands against web01's disk served by host.
func (w *world) qemuAt(host string, cmds ...string) {
	w.t.Helper()
	args := []string{"-f", "raw"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	url := nbd.URL(hostsync.ExportName("web01", "d0"), filepath.Join(w.dirs[host], "nbd.sock"))
	out, err := exec.Command("qemu-io", append(args, url)...).CombinedOutput()
	require.NoError(w.t, err, "qemu-io %v: %s", cmds, out)
	require.NotContains(w.t, string(out), "error", "qemu-io %v: %s", cmds, out)
}

// readExport reads a whole export of host over NBD.
func (w *world) readExport(host, export string) []byte {
	w.t.Helper()
	c, err := nbd.Dial("unix", filepath.Join(w.dirs[host], "nbd.sock"), export)
	require.NoError(w.t, err, "dial %s on %s", export, host)
	defer c.Close()
	out := make([]byte, c.Size())
	for off := int64(0); off < c.Size(); off += 1 << 20 {
		_, err := c.ReadAt(out[off:min(off+1<<20, c.Size())], off)
		require.NoError(w.t, err)
	}
	return out
}

func (w *world) imageOf(host, rel string) []byte {
	w.t.Helper()
	return readFile(w.t, filepath.Join(w.dirs[host], rel))
}

// splitBrainWatch samples both agents' exports until stopped and counts
// the samples in which both served web01.
type splitBrainWatch struct {
	both atomic.Int64
	stop chan struct{}
	wg   sync.WaitGroup
}

func watchSplitBrain(t *testing.T, a, b *hostsync.Agent) *splitBrainWatch {
	s := &splitBrainWatch{stop: make(chan struct{})}
	name := hostsync.ExportName("web01", "d0")
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
			if slices.Contains(a.Exports(), name) && slices.Contains(b.Exports(), name) {
				s.both.Add(1)
			}
		}
	}()
	t.Cleanup(s.end)
	return s
}

func (s *splitBrainWatch) end() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	s.wg.Wait()
}

func active(host string, epoch uint64, state events.ProtectionState) func(events.VM) bool {
	return func(vm events.VM) bool {
		return vm.ActiveHost == host && vm.Epoch == epoch && vm.State == state
	}
}

// failoverAndBack runs a planned failover from one host to the other and
// commits it: the bytes before equal the bytes served after, the old
// source refuses connections, and reverse replication protects the VM the
// other way with no full copy.
func (w *world) plannedRound(from, to string, epoch uint64) {
	t := w.t
	w.qemuAt(from, "write -P 0x5a 2M 128k", "write -P 0x6b 7M 4k") // right before: must not be lost
	w.cmd("sr.cmd.vm.planned_failover", m{"vm": "web01"})
	w.waitVM(20*time.Second, "failed over to "+to, active(to, epoch+1, events.FailoverCommitPending))
	want := w.imageOf(from, "vms/web01/d0.img")
	requireSameBytes(t, want, w.readExport(to, hostsync.ExportName("web01", "d0")), "served at the recovery site after planned failover")
	_, err := nbd.Dial("unix", filepath.Join(w.dirs[from], "nbd.sock"), hostsync.ExportName("web01", "d0"))
	require.Error(t, err, "the old source still serves the disk")

	w.qemuAt(to, "write -P 0x7c 3M 64k")
	w.cmd("sr.cmd.vm.commit", m{"vm": "web01"})
	w.waitVM(20*time.Second, "reverse replication done", func(vm events.VM) bool {
		return vm.State == events.Protected && vm.SourceHost == to && vm.RecoveryHost == from && len(vm.RecoveryPoints) > 0
	})
	w.qemuAt(to, "write -P 0x3d 6M 8k")
	mark := time.Now()
	w.latestPointAfter(mark, 10*time.Second)
	requireSameBytes(t, w.imageOf(to, "vms/web01/d0.img"), w.imageOf(from, "replicas/web01/d0.img"), "replica in the new direction")
}

func TestPlannedFailoverCommitReverseAndFailback(t *testing.T) {
	t.Parallel()
	w := protectFailover(t)
	watch := watchSplitBrain(t, w.agents["hv01"], w.agents["hv11"])
	w.plannedRound("hv01", "hv11", 1)
	w.plannedRound("hv11", "hv01", 2)
	watch.end()
	require.Zero(t, watch.both.Load(), "web01 was served at both sites at once")
	recs, err := w.log.Load(w.ctx, events.VMAgg("web01"))
	require.NoError(t, err)
	var completed int
	for _, r := range recs {
		if d, ok := r.Data.(events.ReverseReplicationStartedData); ok {
			require.False(t, d.Resync, "a planned failover's reverse replication needs no resync")
		}
		if r.Type() == events.ReverseReplicationCompleted {
			completed++
		}
	}
	require.Equal(t, 2, completed)
}

func TestUnplannedFailoverFencesTheReturningSourceAndResyncs(t *testing.T) {
	t.Parallel()
	w, child := protectFailoverChild(t, true)
	w.qemuAt("hv01", "write -P 0x44 1M 256k")
	mark := time.Now()
	w.latestPointAfter(mark, 10*time.Second)
	atPoint := w.imageOf("hv01", "vms/web01/d0.img")

	// The recovery host stops applying; the source writes on, then its
	// agent is killed (kill -9) and its unapplied batches are lost with
	// its site.
	w.stopAgent("hv11")
	w.qemuAt("hv01", "write -P 0x99 4M 192k", "flush")
	diverged := w.imageOf("hv01", "vms/web01/d0.img")
	require.NoError(t, child.Process.Signal(syscall.SIGKILL))
	waitExit(t, child, 5*time.Second)
	stream, err := w.js().Stream(w.ctx, agentproto.DeltaStream("secondary"))
	require.NoError(t, err)
	require.NoError(t, stream.Purge(w.ctx))
	w.startAgent("hv11")

	w.cmd("sr.cmd.vm.unplanned_failover", m{"vm": "web01", "recovery_point": "latest"})
	vm := w.waitVM(20*time.Second, "failed over to hv11", active("hv11", 2, events.FailoverCommitPending))
	rp, _ := parsePoint(vm.FailoverPoint)
	require.Equal(t, uint64(1), rp)
	requireSameBytes(t, atPoint, w.readExport("hv11", hostsync.ExportName("web01", "d0")), "served after unplanned failover")

	// The old source comes back: fenced, its divergence set aside.
	w.startAgent("hv01")
	watch := watchSplitBrain(t, w.agents["hv01"], w.agents["hv11"])
	var div events.DivergenceDetectedData
	w.waitVM(20*time.Second, "divergence reported", func(events.VM) bool {
		recs, err := w.log.Load(w.ctx, events.VMAgg("web01"))
		require.NoError(t, err)
		for _, r := range recs {
			if d, ok := r.Data.(events.DivergenceDetectedData); ok {
				div = d
				return true
			}
		}
		return false
	})
	require.Equal(t, "hv01", div.Host)
	require.Equal(t, uint64(1), div.Epoch)
	require.Equal(t, int64(192<<10/4096), div.Blocks)
	requireSameBytes(t, diverged, readFile(t, div.AsideImages["d0"]), "aside image")
	require.NotContains(t, w.agents["hv01"].Exports(), hostsync.ExportName("web01", "d0"))

	w.qemuAt("hv11", "write -P 0x21 6M 64k")
	w.cmd("sr.cmd.vm.commit", m{"vm": "web01"})
	w.waitVM(10*time.Second, "committed", func(vm events.VM) bool { return vm.State == events.FailoverCommittedState })
	w.cmd("sr.cmd.vm.reverse", m{"vm": "web01"})
	w.waitVM(30*time.Second, "reverse replication by resync", func(vm events.VM) bool {
		return vm.State == events.Protected && vm.SourceHost == "hv11" && vm.RecoveryHost == "hv01"
	})
	w.qemuAt("hv11", "write -P 0x31 7M 4k")
	mark = time.Now()
	w.latestPointAfter(mark, 10*time.Second)
	requireSameBytes(t, w.imageOf("hv11", "vms/web01/d0.img"), w.imageOf("hv01", "replicas/web01/d0.img"), "replica after resync")
	recs, err := w.log.Load(w.ctx, events.VMAgg("web01"))
	require.NoError(t, err)
	for _, r := range recs {
		if d, ok := r.Data.(events.ResyncCompletedData); ok {
			require.Less(t, d.SentBytes, int64(diskSize/4), "resync sends the differing blocks only")
			require.Positive(t, d.SentBytes)
		}
	}
	watch.end()
	require.Zero(t, watch.both.Load(), "web01 was served at both sites at once")
}

func parsePoint(id string) (epoch uint64, ok bool) {
	var cycle uint64
	_, err := fmt.Sscanf(id, "rp-%d-%d", &epoch, &cycle)
	return epoch, err == nil
}

func TestTestFailoverLeavesTheReplicaAlone(t *testing.T) {
	t.Parallel()
	record := filepath.Join(t.TempDir(), "driver.log")
	w := protectFailover(t, func(cfg *hostsync.AgentConfig) {
		cfg.VMStartCommand = fmt.Sprintf(`echo "start $SR_VM $SR_NBD_URLS [$SR_NETWORKS]" >> %s`, record)
		cfg.VMStopCommand = fmt.Sprintf(`echo "stop $SR_VM" >> %s`, record)
	})
	w.qemuAt("hv01", "write -P 0x66 1M 128k")
	mark := time.Now()
	rp := w.latestPointAfter(mark, 10*time.Second)
	atPoint := w.imageOf("hv01", "vms/web01/d0.img")

	w.cmd("sr.cmd.vm.test_failover", m{"vm": "web01", "recovery_point": rp.ID, "network": "isolated"})
	vm := w.waitVM(15*time.Second, "test failover up", func(vm events.VM) bool { return vm.TestState == events.TestCompleted })
	var url string
	for _, im := range vm.Images["d0"] {
		if im.Role == events.DiskRoleTest {
			url = im.NBDURL
		}
	}
	require.NotEmpty(t, url)
	test := hostsync.TestExportName("web01", "d0")
	requireSameBytes(t, atPoint, w.readExport("hv11", test), "test copy")

	// The test VM writes; replication goes on, the replica never sees it.
	c, err := nbd.Dial("unix", filepath.Join(w.dirs["hv11"], "nbd.sock"), test)
	require.NoError(t, err)
	junk := make([]byte, 64<<10)
	for i := range junk {
		junk[i] = 0xee
	}
	require.NoError(t, c.WriteAt(junk, 0, true))
	require.NoError(t, c.Close())
	w.qemuAt("hv01", "write -P 0x67 2M 64k")
	mark = time.Now()
	w.latestPointAfter(mark, 10*time.Second)
	requireSameBytes(t, w.imageOf("hv01", "vms/web01/d0.img"), w.imageOf("hv11", "replicas/web01/d0.img"), "replica during the test")

	w.cmd("sr.cmd.vm.test_cleanup", m{"vm": "web01"})
	w.waitVM(15*time.Second, "test cleaned up", func(vm events.VM) bool { return vm.TestState == events.TestNone })
	require.NotContains(t, w.agents["hv11"].Exports(), test)
	_, err = os.Stat(filepath.Join(w.dirs["hv11"], "tests", "web01", "d0.overlay"))
	require.ErrorIs(t, err, os.ErrNotExist)
	log := string(readFile(t, record))
	require.Contains(t, log, "start web01-test "+url+" [isolated]")
	require.Contains(t, log, "stop web01-test")
}

// BenchmarkPlannedFailover measures a planned failover of one VM with an
// 8 MiB disk, from the command to the recovery host serving it (commit and
// reverse replication, untimed, bring it back for the next round).
func BenchmarkPlannedFailover(b *testing.B) {
	w := protectFailover(b)
	hosts := []string{"hv01", "hv11"}
	var total time.Duration
	for i := 0; b.Loop(); i++ {
		from, to := hosts[i%2], hosts[(i+1)%2]
		w.qemuAt(from, "write -P 0x5a 2M 128k")
		start := time.Now()
		w.cmd("sr.cmd.vm.planned_failover", m{"vm": "web01"})
		w.waitVM(20*time.Second, "failed over", func(vm events.VM) bool {
			return vm.ActiveHost == to && vm.State == events.FailoverCommitPending
		})
		total += time.Since(start)
		w.cmd("sr.cmd.vm.commit", m{"vm": "web01"})
		w.waitVM(20*time.Second, "reversed", func(vm events.VM) bool {
			return vm.State == events.Protected && vm.SourceHost == to
		})
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/failover")
}
