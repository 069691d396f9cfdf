package hostsync

import (
	"bytes"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/siterecovery/siterecovery/hostsync/hashtree"
	"github.com/stretchr/testify/require"
)

const keptDiskSize = 4 << 20

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
	d := mustOpenDisk(t, filepath.Join(t.TempDir(), "d0.img"), keptDiskSize, DiskOptions{MaxLogBytes: 1 << 30})
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
			kt, err = d.startKeptTree()
			require.NoError(t, err)
		}
		seq, exact, err := d.closeCycleKept(time.Now(), false, kt)
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
	d := mustOpenDisk(t, filepath.Join(t.TempDir(), "d0.img"), keptDiskSize, DiskOptions{})
	kt, err := d.startKeptTree()
	require.NoError(t, err)
	_, exact, err := d.closeCycleKept(time.Now(), false, kt)
	require.NoError(t, err)
	require.True(t, exact)
	require.NoError(t, d.WriteAt([]byte("lost from the log"), 3<<20, false))
	require.NoError(t, d.ResetAfterResync(kt.next))
	_, exact, err = d.closeCycleKept(time.Now(), false, kt)
	require.NoError(t, err)
	require.False(t, exact, "the reset dropped a write the tree never folded")
	require.False(t, kt.valid)

	kt, err = d.startKeptTree()
	require.NoError(t, err)
	_, exact, err = d.closeCycleKept(time.Now(), false, kt)
	require.NoError(t, err)
	require.True(t, exact)
	require.Equal(t, treeRootOf(t, readImage(t, d.Path())), kt.tree.Root())
}

// A plain CloseCycle between two kept closes is folded at the next one;
// closeCycleKept writes the same log as CloseCycle.
func TestKeptTreeFoldsPlainClosesAndMatchesCloseCycle(t *testing.T) {
	dir := t.TempDir()
	a := mustOpenDisk(t, filepath.Join(dir, "a.img"), keptDiskSize, DiskOptions{Name: "d0"})
	b := mustOpenDisk(t, filepath.Join(dir, "b.img"), keptDiskSize, DiskOptions{Name: "d0"})
	kt, err := a.startKeptTree()
	require.NoError(t, err)
	at := time.Unix(1700000000, 0)
	for i := 0; i < 6; i++ {
		for _, d := range []*TrackedDisk{a, b} {
			require.NoError(t, d.WriteAt(bytes.Repeat([]byte{byte(i + 1)}, 5000), int64(i)*300<<10+7, false))
			require.NoError(t, d.WriteZeroes(int64(i)*100<<10, 1000, false))
		}
		var seqA uint64
		if i%2 == 0 {
			seqA, err = a.CloseCycle(at, i == 4)
		} else {
			var exact bool
			seqA, exact, err = a.closeCycleKept(at, i == 4, kt)
			require.True(t, exact)
			require.Equal(t, treeRootOf(t, readImage(t, a.Path())), kt.tree.Root())
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
	kept := mustOpenDisk(b, filepath.Join(dir, "k.img"), size, DiskOptions{MaxLogBytes: 1 << 40})
	plain := mustOpenDisk(b, filepath.Join(dir, "p.img"), size, DiskOptions{MaxLogBytes: 1 << 40})
	kt, err := kept.startKeptTree()
	require.NoError(b, err)
	buf := bytes.Repeat([]byte{0xab}, 4096)
	var keptDur, plainDur time.Duration
	for i := 0; b.Loop(); i++ {
		for _, d := range []*TrackedDisk{kept, plain} {
			for w := 0; w < writes; w++ {
				require.NoError(b, d.WriteAt(buf, int64((w*997+i*31)%(size/hashtree.LeafSize))*hashtree.LeafSize+512, false))
			}
		}
		start := time.Now()
		seq, exact, err := kept.closeCycleKept(time.Now(), false, kt)
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
