package hostsync

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/siterecovery/siterecovery/hostsync/cycle"
	"github.com/siterecovery/siterecovery/hostsync/cycle/cycletest"
	"github.com/stretchr/testify/require"
)

func randomTreeWrites(rng *rand.Rand, disk []byte, n int) []cycle.Extent {
	var out []cycle.Extent
	for range n {
		length := int64(1 + rng.IntN(3*HashLeafSize))
		length = min(length, int64(len(disk)))
		off := rng.Int64N(int64(len(disk)) - length + 1)
		cycletest.FillRandom(rng, disk[off:off+length])
		out = append(out, cycle.Extent{Offset: off, Length: length})
	}
	return out
}

func TestHashTreeUpdateEqualsRebuild(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, size := range []int64{0, 1, HashLeafSize, 5*HashLeafSize + 17, 37 * HashLeafSize} {
		disk := make([]byte, size)
		tree, err := BuildHashTree(bytes.NewReader(disk), size)
		require.NoError(t, err)
		for range 10 {
			if size == 0 {
				break
			}
			ext := randomTreeWrites(rng, disk, 1+rng.IntN(4))
			require.NoError(t, tree.Update(bytes.NewReader(disk), ext))
			full, err := BuildHashTree(bytes.NewReader(disk), size)
			require.NoError(t, err)
			require.Equal(t, full.Root(), tree.Root())
			require.Equal(t, full.LeafHashes(), tree.LeafHashes())
		}
	}
}

func TestHashTreeDiffFindsExactlyTheChangedBlocks(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	const size = 200*HashLeafSize + 999
	a := make([]byte, size)
	cycletest.FillRandom(rng, a)
	b := append([]byte(nil), a...)
	changed := map[int64]bool{}
	for range 25 {
		leaf := rng.Int64N(201)
		off := leaf*HashLeafSize + rng.Int64N(min(HashLeafSize, size-leaf*HashLeafSize))
		b[off] ^= 0x5a
		changed[leaf] = true
	}
	ta, err := BuildHashTree(bytes.NewReader(a), size)
	require.NoError(t, err)
	tb, err := BuildHashTree(bytes.NewReader(b), size)
	require.NoError(t, err)
	ranges, err := ta.Diff(tb)
	require.NoError(t, err)
	got := map[int64]bool{}
	for _, r := range ranges {
		require.True(t, r.Offset%HashLeafSize == 0)
		for off := r.Offset; off < r.Offset+r.Length; off += HashLeafSize {
			got[off/HashLeafSize] = true
		}
		require.LessOrEqual(t, r.Offset+r.Length, int64(size))
	}
	require.Equal(t, changed, got)

	same, err := ta.Diff(ta)
	require.NoError(t, err)
	require.Empty(t, same)
	other, err := BuildHashTree(bytes.NewReader(a[:size-1]), size-1)
	require.NoError(t, err)
	_, err = ta.Diff(other)
	require.ErrorIs(t, err, ErrHashTree)
}

func TestHashTreeLeavesExportAndPersistence(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	disk := make([]byte, 9*HashLeafSize+5)
	cycletest.FillRandom(rng, disk[:3*HashLeafSize])
	tree, err := BuildHashTree(bytes.NewReader(disk), int64(len(disk)))
	require.NoError(t, err)

	remote, err := HashTreeFromLeaves(int64(len(disk)), tree.LeafHashes())
	require.NoError(t, err)
	require.Equal(t, tree.Root(), remote.Root())
	var chunks []byte
	for first := 0; first < tree.LeafCount(); first += 4 {
		chunks = append(chunks, tree.LeafHashesRange(first, 4)...)
	}
	require.Equal(t, tree.LeafHashes(), chunks)
	_, err = HashTreeFromLeaves(int64(len(disk)), tree.LeafHashes()[1:])
	require.ErrorIs(t, err, ErrHashTree)

	path := filepath.Join(t.TempDir(), "sda.hashtree")
	require.NoError(t, tree.Save(path, "gen-7"))
	loaded, stamp, err := LoadHashTree(path)
	require.NoError(t, err)
	require.Equal(t, "gen-7", stamp)
	require.Equal(t, tree.Root(), loaded.Root())

	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	raw[30] ^= 1
	require.NoError(t, os.WriteFile(path, raw, 0o644))
	_, _, err = LoadHashTree(path)
	require.ErrorIs(t, err, ErrHashTree)
}

// TestHashTreeSparseFile: a sparse file hashes like the same bytes in memory.
func TestHashTreeSparseFile(t *testing.T) {
	const size = 64*HashLeafSize + 100
	f, err := os.Create(filepath.Join(t.TempDir(), "disk.img"))
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, f.Truncate(size))
	mem := make([]byte, size)
	for _, off := range []int64{3 * HashLeafSize, 40*HashLeafSize + 7, size - 50} {
		_, err := f.WriteAt([]byte("data here"), off)
		require.NoError(t, err)
		copy(mem[off:], "data here")
	}
	fromFile, err := BuildHashTree(f, size)
	require.NoError(t, err)
	fromMem, err := BuildHashTree(bytes.NewReader(mem), size)
	require.NoError(t, err)
	require.Equal(t, fromMem.Root(), fromFile.Root())
}

func BenchmarkHashTreeUpdate(b *testing.B) {
	const size = 2 << 30 // a 2 GiB sparse disk
	f, err := os.Create(filepath.Join(b.TempDir(), "disk.img"))
	require.NoError(b, err)
	defer f.Close()
	require.NoError(b, f.Truncate(size))
	tree, err := BuildHashTree(f, size)
	require.NoError(b, err)
	rng := rand.New(rand.NewPCG(17, 18))
	block := make([]byte, HashLeafSize)
	cycletest.FillRandom(rng, block)
	const perCycle = 64 // 4 MiB of 64 KiB writes per update
	b.SetBytes(perCycle * HashLeafSize)
	for b.Loop() {
		b.StopTimer()
		ext := make([]cycle.Extent, perCycle)
		for i := range ext {
			off := rng.Int64N(size/HashLeafSize) * HashLeafSize
			_, err := f.WriteAt(block, off)
			require.NoError(b, err)
			ext[i] = cycle.Extent{Offset: off, Length: HashLeafSize}
		}
		b.StartTimer()
		require.NoError(b, tree.Update(f, ext))
	}
}

// An update from extents that carry their bytes (a cycle being applied)
// hashes whole leaves from the extents and reads only the others: the same
// tree as a rebuild, with overlapping extents (the later wins), zero
// extents and a partial last leaf.
func TestHashTreeUpdateFromExtentDataEqualsRebuild(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	for _, size := range []int64{HashLeafSize, 5*HashLeafSize + 17, 37 * HashLeafSize} {
		disk := make([]byte, size)
		cycletest.FillRandom(rng, disk)
		tree, err := BuildHashTree(bytes.NewReader(disk), size)
		require.NoError(t, err)
		for range 20 {
			ext := randomTreeWrites(rng, disk, 1+rng.IntN(4))
			for i := range ext {
				e := &ext[i]
				if rng.IntN(4) == 0 {
					e.Zero = true
					clear(disk[e.Offset:e.End()])
					continue
				}
				e.Data = bytes.Clone(disk[e.Offset:e.End()])
			}
			// Later extents overwrite earlier ones on the disk; an earlier
			// extent's Data is stale where they overlap.
			for _, e := range ext {
				if e.Zero {
					clear(disk[e.Offset:e.End()])
				} else {
					copy(disk[e.Offset:], e.Data)
				}
			}
			require.NoError(t, tree.Update(bytes.NewReader(disk), ext))
			full, err := BuildHashTree(bytes.NewReader(disk), size)
			require.NoError(t, err)
			require.Equal(t, full.LeafHashes(), tree.LeafHashes())
		}
	}
}
