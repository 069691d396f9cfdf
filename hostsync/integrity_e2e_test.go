package hostsync_test

import (
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/handlers"
	"github.com/siterecovery/siterecovery/hostsync/hashtree"
)

// protectVerify is protectFailover plus the control plane's verify
// endpoint (sr.cmd.vm.verify).
func protectVerify(t *testing.T) *world {
	w := protectFailover(t)
	svc, err := micro.AddService(w.nc, micro.Config{Name: "siterecovery-verify", Version: "0.1.0"})
	require.NoError(t, err)
	t.Cleanup(func() { svc.Stop() })
	require.NoError(t, handlers.NewVerifyHandlers(w.log, w.nc, w.logger).AddEndpoints(w.ctx, svc))
	return w
}

// verify runs `vm verify web01`.
func (w *world) verify() handlers.VerifyResult {
	w.t.Helper()
	msg, err := w.nc.Request(handlers.VerifySubject, []byte(`{"vm":"web01"}`), 60*time.Second)
	require.NoError(w.t, err)
	require.NotContains(w.t, string(msg.Data), `"error"`, "verify: %s", msg.Data)
	var res handlers.VerifyResult
	require.NoError(w.t, json.Unmarshal(msg.Data, &res))
	return res
}

// corruptReplica flips 16 bytes of the replica image behind the agent's
// back, as a failing disk would.
func (w *world) corruptReplica(off int64) {
	w.t.Helper()
	f, err := os.OpenFile(w.replicaImage(), os.O_RDWR, 0)
	require.NoError(w.t, err)
	defer f.Close()
	buf := make([]byte, 16)
	_, err = f.ReadAt(buf, off)
	require.NoError(w.t, err)
	for i := range buf {
		buf[i] ^= 0xff
	}
	_, err = f.WriteAt(buf, off)
	require.NoError(w.t, err)
	require.NoError(w.t, f.Sync())
}

// resyncRepairs runs `vm resync` from ResyncRequired and waits until the
// replica holds the source's bytes again.
func (w *world) resyncRepairs() {
	w.t.Helper()
	w.cmd("sr.cmd.vm.resync", m{"vm": "web01"})
	w.waitVM(30*time.Second, "resynchronised", func(vm events.VM) bool { return vm.State == events.Protected })
	deadline := time.Now().Add(20 * time.Second)
	for !equalFiles(w.t, w.sourceImage(), w.replicaImage()) {
		require.True(w.t, time.Now().Before(deadline), "the replica never equalled the source after the resync")
		time.Sleep(100 * time.Millisecond) // polling the replica for the next applied cycle
	}
}

func equalFiles(t testing.TB, a, b string) bool {
	return string(readFile(t, a)) == string(readFile(t, b))
}

func imageTreeRoot(t testing.TB, path string) string {
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	st, err := f.Stat()
	require.NoError(t, err)
	tree, err := hashtree.Build(f, st.Size())
	require.NoError(t, err)
	return tree.Root()
}

// A clean replica verifies equal; a replica block no cycle touches,
// corrupted behind the agent's back, is named exactly by verify (the
// replica is re-hashed from its image), raises ResyncRequired and Critical,
// and `vm resync` repairs it.
func TestVerifyFindsCorruptUntouchedBlockAndResyncRepairs(t *testing.T) {
	w := protectVerify(t)
	res := w.verify()
	require.True(t, res.Equal, "a clean replica: %+v", res)
	require.NotEmpty(t, res.Point)
	require.Empty(t, res.Differing)

	const bad = 3<<20 + 100 // a hole on both sides, never written
	w.corruptReplica(bad)
	res = w.verify()
	require.False(t, res.Equal)
	require.Equal(t, []events.DiskRange{{Disk: "d0", Offset: 3 << 20, Length: hashtree.LeafSize}}, res.Differing)
	vm := w.waitVM(10*time.Second, "resync required and critical", func(vm events.VM) bool {
		return vm.State == events.ResyncRequiredState && vm.Health == events.HealthCritical
	})
	require.Equal(t, events.ResyncRequiredState, vm.State)

	w.resyncRepairs()
	res = w.verify()
	require.True(t, res.Equal, "after the resync: %+v", res)
}

// A corrupted replica block that a later cycle partly rewrites: after
// applying that cycle the recovery host's roots disagree with the source's
// roots carried by the cycle, which raises ResyncRequired and Critical; the
// point is not recorded; `vm resync` repairs the replica.
func TestCycleRootsCatchCorruptionAndResyncRepairs(t *testing.T) {
	w := protectVerify(t)
	vm := w.vm()
	latest, _ := vm.RecoveryPoint("latest")
	require.Equal(t, imageTreeRoot(t, w.sourceImage()), latest.Roots["d0"], "points record the source's roots")

	w.corruptReplica(5<<20 + 100) // in the block written before protection
	w.qemuAt("hv01", "write -P 0x33 5275648 4096")
	vm = w.waitVM(15*time.Second, "resync required after the next cycle", func(vm events.VM) bool {
		return vm.State == events.ResyncRequiredState && vm.Health == events.HealthCritical
	})
	for _, p := range vm.RecoveryPoints {
		require.NotEqual(t, imageTreeRoot(t, w.replicaImage()), p.Roots["d0"], "no point records the corrupted replica")
	}
	w.resyncRepairs()
	require.True(t, w.verify().Equal)
}
