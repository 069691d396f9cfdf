package hashtree

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/hostsync/cycle"
	"github.com/siterecovery/siterecovery/hostsync/cycle/cycletest"
)

func randomTreeWrites(rng *rand.Rand, disk []byte, n int) []cycle.Extent {
	var out []cycle.Extent
	for range n {
		length := int64(1 + rng.IntN(3*LeafSize))
		length = min(length, int64(len(disk)))
		off := rng.Int64N(int64(len(disk)) - length + 1)
		cycletest.FillRandom(rng, disk[off:off+length])
		out = append(out, cycle.Extent{Offset: off, Length: length})
	}
	return out
}

func TestHashTreeUpdateEqualsRebuild(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, size := range []int64{0, 1, LeafSize, 5*LeafSize + 17, 37 * LeafSize} {
		disk := make([]byte, size)
		tree, err := Build(bytes.NewReader(disk), size)
		require.NoError(t, err)
		for range 10 {
			if size == 0 {
				break
			}
			ext := randomTreeWrites(rng, disk, 1+rng.IntN(4))
			require.NoError(t, tree.Update(bytes.NewReader(disk), ext))
			full, err := Build(bytes.NewReader(disk), size)
			require.NoError(t, err)
			require.Equal(t, full.Root(), tree.Root())
			require.Equal(t, full.LeafHashes(), tree.LeafHashes())
		}
	}
}

func TestHashTreeDiffFindsExactlyTheChangedBlocks(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	const size = 200*LeafSize + 999
	a := make([]byte, size)
	cycletest.FillRandom(rng, a)
	b := append([]byte(nil), a...)
	changed := map[int64]bool{}
	for range 25 {
		leaf := rng.Int64N(201)
		off := leaf*LeafSize + rng.Int64N(min(LeafSize, size-leaf*LeafSize))
		b[off] ^= 0x5a
		changed[leaf] = true
	}
	ta, err := Build(bytes.NewReader(a), size)
	require.NoError(t, err)
	tb, err := Build(bytes.NewReader(b), size)
	require.NoError(t, err)
	ranges, err := ta.Diff(tb)
	require.NoError(t, err)
	got := map[int64]bool{}
	for _, r := range ranges {
		require.True(t, r.Offset%LeafSize == 0)
		for off := r.Offset; off < r.Offset+r.Length; off += LeafSize {
			got[off/LeafSize] = true
		}
		require.LessOrEqual(t, r.Offset+r.Length, int64(size))
	}
	require.Equal(t, changed, got)

	same, err := ta.Diff(ta)
	require.NoError(t, err)
	require.Empty(t, same)
	other, err := Build(bytes.NewReader(a[:size-1]), size-1)
	require.NoError(t, err)
	_, err = ta.Diff(other)
	require.ErrorIs(t, err, ErrInvalid)
}

func TestHashTreeLeavesExportAndPersistence(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	disk := make([]byte, 9*LeafSize+5)
	cycletest.FillRandom(rng, disk[:3*LeafSize])
	tree, err := Build(bytes.NewReader(disk), int64(len(disk)))
	require.NoError(t, err)

	remote, err := FromLeaves(int64(len(disk)), tree.LeafHashes())
	require.NoError(t, err)
	require.Equal(t, tree.Root(), remote.Root())
	var chunks []byte
	for first := 0; first < LeafCount(tree.Size()); first += 4 {
		chunks = append(chunks, tree.LeafHashesRange(first, 4)...)
	}
	require.Equal(t, tree.LeafHashes(), chunks)
	_, err = FromLeaves(int64(len(disk)), tree.LeafHashes()[1:])
	require.ErrorIs(t, err, ErrInvalid)

	path := filepath.Join(t.TempDir(), "sda.hashtree")
	require.NoError(t, tree.Save(path, "gen-7"))
	loaded, stamp, err := Load(path)
	require.NoError(t, err)
	require.Equal(t, "gen-7", stamp)
	require.Equal(t, tree.Root(), loaded.Root())

	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	raw[30] ^= 1
	require.NoError(t, os.WriteFile(path, raw, 0o644))
	_, _, err = Load(path)
	require.ErrorIs(t, err, ErrInvalid)
}

// TestHashTreeSparseFile: a sparse file hashes like the same bytes in memory.
func TestHashTreeSparseFile(t *testing.T) {
	const size = 64*LeafSize + 100
	f, err := os.Create(filepath.Join(t.TempDir(), "disk.img"))
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, f.Truncate(size))
	mem := make([]byte, size)
	for _, off := range []int64{3 * LeafSize, 40*LeafSize + 7, size - 50} {
		_, err := f.WriteAt([]byte("data here"), off)
		require.NoError(t, err)
		copy(mem[off:], "data here")
	}
	fromFile, err := Build(f, size)
	require.NoError(t, err)
	fromMem, err := Build(bytes.NewReader(mem), size)
	require.NoError(t, err)
	require.Equal(t, fromMem.Root(), fromFile.Root())
}

func BenchmarkHashTreeUpdate(b *testing.B) {
	const size = 2 << 30 // a 2 GiB sparse disk
	f, err := os.Create(filepath.Join(b.TempDir(), "disk.img"))
	require.NoError(b, err)
	defer f.Close()
	require.NoError(b, f.Truncate(size))
	tree, err := Build(f, size)
	require.NoError(b, err)
	rng := rand.New(rand.NewPCG(17, 18))
	block := make([]byte, LeafSize)
	cycletest.FillRandom(rng, block)
	const perCycle = 64 // 4 MiB of 64 KiB writes per update
	b.SetBytes(perCycle * LeafSize)
	for b.Loop() {
		b.StopTimer()
		ext := make([]cycle.Extent, perCycle)
		for i := range ext {
			off := rng.Int64N(size/LeafSize) * LeafSize
			_, err := f.WriteAt(block, off)
			require.NoError(b, err)
			ext[i] = cycle.Extent{Offset: off, Length: LeafSize}
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
	for _, size := range []int64{LeafSize, 5*LeafSize + 17, 37 * LeafSize} {
		disk := make([]byte, size)
		cycletest.FillRandom(rng, disk)
		tree, err := Build(bytes.NewReader(disk), size)
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
			full, err := Build(bytes.NewReader(disk), size)
			require.NoError(t, err)
			require.Equal(t, full.LeafHashes(), tree.LeafHashes())
		}
	}
}
