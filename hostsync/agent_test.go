package hostsync_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/hostsync/replica"
)

// snapshot is the source disk's content after a round of writes, and the
// instants the round began and ended.
type snapshot struct {
	begin, end time.Time
	data       []byte
}

// protect builds the fabric, starts both agents, writes a few ranges before
// protection (initial replication must carry them) and enables protection;
// it returns once the VM is Protected with a first recovery point.
func protect(t *testing.T, policy m) *world {
	w := mustWorld(t)
	w.fabric(policy)
	w.startAgent("hv01")
	w.startAgent("hv11")
	w.waitSourceServed()
	w.qemuIO("write -P 0x11 0 1M", "write -P 0x22 5M 64k", "write -P 0x33 8100k 4k")
	w.cmd("sr.cmd.vm.enable", m{"vm": "web01"})
	w.waitVM(15*time.Second, "protected with a point", func(vm events.VM) bool {
		return vm.State == events.Protected && len(vm.RecoveryPoints) > 0
	})
	return w
}

// waitSourceServed waits until the VM's source disk is served over NBD.
func (w *world) waitSourceServed() {
	w.t.Helper()
	w.waitVM(10*time.Second, "source disk served", func(vm events.VM) bool {
		for _, im := range vm.Images["d0"] {
			if im.Role == events.DiskRoleSource && im.NBDURL != "" {
				return true
			}
		}
		return false
	})
}

// randomRound writes random ranges and zeroes one, through NBD.
func (w *world) randomRound(rng *rand.Rand, round int) snapshot {
	begin := time.Now()
	var cmds []string
	for i := range 6 {
		off := rng.Int64N(diskSize/4096-64) * 4096
		n := (rng.Int64N(63) + 1) * 4096
		cmds = append(cmds, fmt.Sprintf("write -P %s %d %d", pattern(round*10+i), off, n))
	}
	cmds = append(cmds, fmt.Sprintf("write -z %d 65536", rng.Int64N(diskSize/65536)*65536))
	w.qemuIO(cmds...)
	end := time.Now()
	return snapshot{begin: begin, end: end, data: readFile(w.t, w.sourceImage())}
}

func TestAgentReplicatesInitialAndDeltas(t *testing.T) {
	w := protect(t, nil)
	vm := w.vm()
	require.Equal(t, events.HealthNormal, vm.Health)
	recs, err := w.log.Load(w.ctx, events.VMAgg("web01"))
	require.NoError(t, err)
	var progress []events.Type
	for _, r := range recs {
		if done, ok := r.Data.(events.InitialReplicationCompletedData); ok {
			// 1 MiB, 64 KiB and a 4 KiB write in one 64 KiB block: the
			// zero blocks of the 8 MiB disk are not shipped.
			require.Equal(t, int64(18<<16), done.SentBytes, "initial replication sent bytes")
		}
		switch r.Type() {
		case events.InitialReplicationStarted, events.InitialReplicationProgress, events.InitialReplicationCompleted:
			progress = append(progress, r.Type())
		}
	}
	require.Equal(t, events.InitialReplicationStarted, progress[0])
	require.Equal(t, events.InitialReplicationCompleted, progress[len(progress)-1])
	rounds := []snapshot{{end: time.Now(), data: readFile(t, w.sourceImage())}}
	w.latestPointAfter(rounds[0].end, 10*time.Second)
	requireSameBytes(t, rounds[0].data, readFile(t, w.replicaImage()), "replica after initial replication")

	rng := rand.New(rand.NewPCG(1, 2))
	for r := range 3 {
		s := w.randomRound(rng, r)
		rounds = append(rounds, s)
		w.latestPointAfter(s.end, 10*time.Second)
		requireSameBytes(t, s.data, readFile(t, w.replicaImage()), fmt.Sprintf("replica after round %d", r))
	}
	vm = w.vm()
	for _, im := range []string{events.DiskRoleSource, events.DiskRoleReplica} {
		found := false
		for _, di := range vm.Images["d0"] {
			found = found || di.Role == im
		}
		require.True(t, found, "a %s image is reported", im)
	}

	// Every retained point that closed between two rounds restores the
	// source as it was after the earlier round.
	w.stopAgent("hv11")
	rep, err := replica.Open(filepath.Join(w.dirs["hv11"], "replicas", "web01"), "web01",
		[]events.DiskSpec{{Name: "d0", Size: diskSize}}, zerolog.Nop())
	require.NoError(t, err)
	defer rep.Close()
	checked := map[int]int{}
	for _, p := range rep.Points() {
		if _, ok := vm.RecoveryPoint(p.ID); !ok {
			continue // an initial replication chunk, not a recovery point
		}
		for i, s := range rounds {
			later := i+1 < len(rounds)
			if p.Time.Before(s.end) || (later && !p.Time.Before(rounds[i+1].begin)) {
				continue
			}
			dir := t.TempDir()
			paths, err := rep.MaterializePoint(w.ctx, p.ID, dir)
			require.NoError(t, err)
			requireSameBytes(t, s.data, readFile(t, paths["d0"]), "point "+p.ID)
			checked[i]++
			os.RemoveAll(dir)
		}
	}
	for i := range rounds {
		require.Positive(t, checked[i], "no point checked for round %d (%v)", i, checked)
	}
}
