package hostsync_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
)

func TestResyncShipsOnlyTheDifferingBlocks(t *testing.T) {
	t.Parallel()
	w := protectFailover(t)
	w.qemuAt("hv01", "write -P 0x51 1M 64k")
	mark := time.Now()
	w.latestPointAfter(mark, 10*time.Second)

	// The source host loses its change log while the disk changes
	// untracked: ten scattered 64 KiB blocks.
	w.stopAgent("hv01")
	img, err := os.OpenFile(w.sourceImage(), os.O_RDWR, 0)
	require.NoError(t, err)
	block := make([]byte, 64<<10)
	for i := range block {
		block[i] = byte(i%251) + 1
	}
	for i := range 10 {
		_, err := img.WriteAt(block, int64(i)*(768<<10))
		require.NoError(t, err)
	}
	require.NoError(t, img.Close())
	require.NoError(t, os.Remove(w.sourceImage()+".hrl"))
	w.startAgent("hv01")
	w.waitVM(15*time.Second, "resync required", func(vm events.VM) bool { return vm.State == events.ResyncRequiredState })

	w.cmd("sr.cmd.vm.resync", m{"vm": "web01"})
	w.waitVM(20*time.Second, "resynchronized", func(vm events.VM) bool { return vm.State == events.Protected })
	w.qemuAt("hv01", "write -P 0x52 6M 4k")
	mark = time.Now()
	w.latestPointAfter(mark, 10*time.Second)
	requireSameBytes(t, readFile(t, w.sourceImage()), readFile(t, filepath.Join(w.dirs["hv11"], "replicas", "web01", "d0.img")), "replica after resync")

	recs, err := w.log.Load(w.ctx, events.VMAgg("web01"))
	require.NoError(t, err)
	var sent int64 = -1
	progress := 0
	for _, r := range recs {
		switch d := r.Data.(type) {
		case events.ResyncCompletedData:
			sent = d.SentBytes
		case events.ResyncProgressData:
			progress++
		}
	}
	require.Equal(t, int64(10*64<<10), sent, "only the ten differing blocks cross")
	require.Positive(t, progress)
}
