package hostsync

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/hostsync/cycle"
	"github.com/siterecovery/siterecovery/hostsync/disk"
	"github.com/siterecovery/siterecovery/hostsync/hashtree"
)

const keptDiskSize = 4 << 20

// imageRoot is the hash tree root of the image at path.
func imageRoot(tb testing.TB, path string) string {
	tb.Helper()
	buf, err := os.ReadFile(path)
	require.NoError(tb, err)
	return treeRootOf(tb, buf)
}

// mustOpenDisk opens (or creates) a tracked disk and closes it when the
// test ends.
func mustOpenDisk(tb testing.TB, path string, size int64, opts disk.Options) *disk.Tracked {
	tb.Helper()
	opts.BootID = "boot-a"
	d, err := disk.Open(path, size, opts)
	require.NoError(tb, err)
	tb.Cleanup(func() { require.NoError(tb, d.Close()) })
	return d
}

// applyCycle applies a cycle's extents to buf, as a replica would.
func applyCycle(buf []byte, c cycle.Cycle) {
	for _, e := range c.Extents {
		if e.Zero {
			clear(buf[e.Offset:e.End()])
		} else {
			copy(buf[e.Offset:], e.Data)
		}
	}
}

func treeRootOf(tb testing.TB, buf []byte) string {
	tb.Helper()
	t, err := hashtree.Build(bytes.NewReader(buf), int64(len(buf)))
	require.NoError(tb, err)
	return t.Root()
}

// While a writer keeps writing, every cycle closed with closeCycleKept
// carries the root of the disk exactly at that close: a shadow image built
// by applying the cycles, as a replica does, hashes to it.
func TestKeptTreeExactUnderConcurrentWrites(t *testing.T) {
	d := mustOpenDisk(t, filepath.Join(t.TempDir(), "d0.img"), keptDiskSize, disk.Options{MaxLogBytes: 1 << 30})
	shadow := make([]byte, keptDiskSize)
	require.NoError(t, d.WriteAt(bytes.Repeat([]byte{9}, 100<<10), 1<<20, false))
	seq0, err := d.CloseCycle(time.Now(), false)
	require.NoError(t, err)
	c0, err := d.Cycle(seq0)
	require.NoError(t, err)
	applyCycle(shadow, c0)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(1, 2))
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			off := rng.Int64N(keptDiskSize - 80<<10)
			if i%7 == 0 {
				_ = d.WriteZeroes(off, rng.Int64N(70<<10)+1, false)
				continue
			}
			_ = d.WriteAt(bytes.Repeat([]byte{byte(i)}, int(rng.Int64N(16<<10))+1), off, false)
			time.Sleep(50 * time.Microsecond) // pace the writer: a few MB per cycle
		}
	}()
	var kt *keptTree
	exactSeen := 0
	rootAt := map[uint64]string{}
	for i := 0; i < 25; i++ {
		if kt == nil || !kt.valid {
			kt, err = startKeptTree(d)
			require.NoError(t, err)
		}
		seq, exact, err := closeCycleKept(d, time.Now(), false, kt, zerolog.Nop())
		require.NoError(t, err)
		c, err := d.Cycle(seq)
		require.NoError(t, err)
		applyCycle(shadow, c)
		if exact {
			exactSeen++
			require.Equal(t, treeRootOf(t, shadow), kt.tree.Root(), "cycle %d", seq)
			require.Equal(t, seq, kt.seq)
			rootAt[seq] = kt.tree.Root()
		}
		require.NoError(t, d.Ack(seq))
		time.Sleep(2 * time.Millisecond) // let writes land between closes
	}
	close(stop)
	wg.Wait()
	require.Equal(t, 25, exactSeen, "every close keeps the tree exact")
	// The tree rolls back over the last keepUndo exact cycles, not
	// further.
	for back := uint64(0); back <= keepUndo+1; back++ {
		seq := kt.seq - back
		leaves, ok := kt.leavesAt(seq)
		if back > keepUndo {
			require.False(t, ok, "cycle %d is past the undo kept", seq)
			continue
		}
		require.True(t, ok, "cycle %d", seq)
		require.Equal(t, rootAt[seq], hashtree.FromHashes(keptDiskSize, leaves).Root(), "tree rolled back to cycle %d", seq)
	}
	_, ok := kt.leavesAt(kt.seq + 1)
	require.False(t, ok)
}

// A change log reset (resync, initial replication) drops records the tree
// did not fold: the tree is no longer exact and says so; a new one is.
func TestKeptTreeInvalidAfterReset(t *testing.T) {
	d := mustOpenDisk(t, filepath.Join(t.TempDir(), "d0.img"), keptDiskSize, disk.Options{})
	kt, err := startKeptTree(d)
	require.NoError(t, err)
	_, exact, err := closeCycleKept(d, time.Now(), false, kt, zerolog.Nop())
	require.NoError(t, err)
	require.True(t, exact)
	require.NoError(t, d.WriteAt([]byte("lost from the log"), 3<<20, false))
	require.NoError(t, d.ResetAfterResync(kt.mark.Next))
	_, exact, err = closeCycleKept(d, time.Now(), false, kt, zerolog.Nop())
	require.NoError(t, err)
	require.False(t, exact, "the reset dropped a write the tree never folded")
	require.False(t, kt.valid)

	kt, err = startKeptTree(d)
	require.NoError(t, err)
	_, exact, err = closeCycleKept(d, time.Now(), false, kt, zerolog.Nop())
	require.NoError(t, err)
	require.True(t, exact)
	require.Equal(t, imageRoot(t, d.Path()), kt.tree.Root())
}

// A plain CloseCycle between two kept closes is folded at the next one;
// closeCycleKept writes the same log as CloseCycle.
func TestKeptTreeFoldsPlainClosesAndMatchesCloseCycle(t *testing.T) {
	dir := t.TempDir()
	a := mustOpenDisk(t, filepath.Join(dir, "a.img"), keptDiskSize, disk.Options{Name: "d0"})
	b := mustOpenDisk(t, filepath.Join(dir, "b.img"), keptDiskSize, disk.Options{Name: "d0"})
	kt, err := startKeptTree(a)
	require.NoError(t, err)
	at := time.Unix(1700000000, 0)
	for i := 0; i < 6; i++ {
		for _, d := range []*disk.Tracked{a, b} {
			require.NoError(t, d.WriteAt(bytes.Repeat([]byte{byte(i + 1)}, 5000), int64(i)*300<<10+7, false))
			require.NoError(t, d.WriteZeroes(int64(i)*100<<10, 1000, false))
		}
		var seqA uint64
		if i%2 == 0 {
			seqA, err = a.CloseCycle(at, i == 4)
		} else {
			var exact bool
			seqA, exact, err = closeCycleKept(a, at, i == 4, kt, zerolog.Nop())
			require.True(t, exact)
			require.Equal(t, imageRoot(t, a.Path()), kt.tree.Root())
		}
		require.NoError(t, err)
		seqB, err := b.CloseCycle(at, i == 4)
		require.NoError(t, err)
		require.Equal(t, seqB, seqA)
		ca, err := a.Cycle(seqA)
		require.NoError(t, err)
		cb, err := b.Cycle(seqB)
		require.NoError(t, err)
		require.Equal(t, cb, ca)
	}
	require.Equal(t, b.Pending(), a.Pending())
}

// BenchmarkCloseCycleKept measures the close of a cycle of 256 scattered
// 4 KiB writes with the kept tree folded (writes wait while the 256
// touched 64 KiB leaves are re-hashed) against a plain CloseCycle, and
// reports both and the ratio.
func BenchmarkCloseCycleKept(b *testing.B) {
	const size, writes = 64 << 20, 256
	dir := b.TempDir()
	kept := mustOpenDisk(b, filepath.Join(dir, "k.img"), size, disk.Options{MaxLogBytes: 1 << 40})
	plain := mustOpenDisk(b, filepath.Join(dir, "p.img"), size, disk.Options{MaxLogBytes: 1 << 40})
	kt, err := startKeptTree(kept)
	require.NoError(b, err)
	buf := bytes.Repeat([]byte{0xab}, 4096)
	var keptDur, plainDur time.Duration
	for i := 0; b.Loop(); i++ {
		for _, d := range []*disk.Tracked{kept, plain} {
			for w := 0; w < writes; w++ {
				require.NoError(b, d.WriteAt(buf, int64((w*997+i*31)%(size/hashtree.LeafSize))*hashtree.LeafSize+512, false))
			}
		}
		start := time.Now()
		seq, exact, err := closeCycleKept(kept, time.Now(), false, kt, zerolog.Nop())
		keptDur += time.Since(start)
		require.NoError(b, err)
		require.True(b, exact)
		start = time.Now()
		pseq, err := plain.CloseCycle(time.Now(), false)
		plainDur += time.Since(start)
		require.NoError(b, err)
		require.NoError(b, kept.Ack(seq))
		require.NoError(b, plain.Ack(pseq))
	}
	n := float64(b.N)
	b.ReportMetric(float64(keptDur.Microseconds())/n, "kept_close_us")
	b.ReportMetric(float64(plainDur.Microseconds())/n, "plain_close_us")
	b.ReportMetric(float64(keptDur)/float64(plainDur), "kept/plain")
	b.ReportMetric(float64(writes*hashtree.LeafSize)/(1<<20)/(keptDur-plainDur).Seconds()*n, "rehash_MB/s")
}
