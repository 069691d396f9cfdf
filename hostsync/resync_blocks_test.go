package hostsync

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/hostsync/cycle"
	"github.com/siterecovery/siterecovery/hostsync/hashtree"
	"github.com/siterecovery/siterecovery/hostsync/replica"
)

// resyncPair is a source image and a replica of one disk that differ in
// scattered 4 KiB blocks.
type resyncPair struct {
	src     *os.File
	rep     *replica.Replica
	size    int64
	changed map[int64]bool // offsets of the differing blocks
}

func mustResyncPair(tb testing.TB, size int64, blocks int, seed uint64) *resyncPair {
	tb.Helper()
	dir := tb.TempDir()
	rep, err := replica.Open(filepath.Join(dir, "replica"), "vm", []events.DiskSpec{{Name: "d0", Size: size}}, zerolog.Nop())
	require.NoError(tb, err)
	tb.Cleanup(func() { rep.Close() })
	src, err := os.OpenFile(filepath.Join(dir, "src.img"), os.O_CREATE|os.O_RDWR, 0o600)
	require.NoError(tb, err)
	tb.Cleanup(func() { src.Close() })
	require.NoError(tb, src.Truncate(size))
	p := &resyncPair{src: src, rep: rep, size: size, changed: map[int64]bool{}}
	rng := rand.New(rand.NewPCG(seed, 7))
	buf := make([]byte, subBlock)
	for len(p.changed) < blocks {
		off := rng.Int64N(size/subBlock) * subBlock
		for i := range buf {
			buf[i] = byte(rng.UintN(255) + 1)
		}
		_, err := src.WriteAt(buf, off)
		require.NoError(tb, err)
		p.changed[off] = true
	}
	return p
}

// diff runs the source's side of a resync against the replica in process.
func (p *resyncPair) diff(tb testing.TB) ([]cycle.Range, int64) {
	local, err := hashtree.Build(p.src, p.size)
	require.NoError(tb, err)
	remote, err := p.rep.HashTree("d0")
	require.NoError(tb, err)
	leaves, err := local.Diff(remote)
	require.NoError(tb, err)
	exchanged := int64(len(remote.LeafHashes()))
	out, err := refineRanges(p.src, p.size, leaves, func(ls []int) ([]byte, error) {
		h, err := p.rep.SubHashes("d0", ls)
		exchanged += int64(len(h))
		return h, err
	})
	require.NoError(tb, err)
	return out, exchanged
}

func TestResyncRefinesToTheDifferingBlocks(t *testing.T) {
	p := mustResyncPair(t, 8<<20+12288, 40, 1)
	ranges, _ := p.diff(t)
	got := map[int64]bool{}
	for _, br := range ranges {
		require.Zero(t, br.Offset%subBlock)
		for off := br.Offset; off < br.Offset+br.Length; off += subBlock {
			got[off] = true
		}
	}
	require.Equal(t, p.changed, got)
}

func TestPackChunksCoversEveryRangeOnce(t *testing.T) {
	disks := []events.DiskSpec{{Name: "a", Size: 10 << 20}, {Name: "b", Size: 3 << 20}}
	ranges := map[string][]cycle.Range{
		"a": {{Offset: 0, Length: 3 << 20}, {Offset: 5 << 20, Length: 4096}, {Offset: 6 << 20, Length: 2 << 20}},
		"b": {{Offset: 1 << 20, Length: 1 << 20}},
	}
	for _, count := range []int{1, 2, 13} {
		chunks := packChunks(disks, ranges, 1<<20, count)
		require.Len(t, chunks, count)
		covered := map[string]int64{}
		for j, ch := range chunks {
			var n int64
			for _, p := range ch {
				n += p.Length
				covered[p.disk] += p.Length
			}
			if j < count-1 {
				require.LessOrEqual(t, n, int64(1<<20))
			}
		}
		require.Equal(t, map[string]int64{"a": 5<<20 + 4096, "b": 1 << 20}, covered)
		require.Equal(t, chunks, packChunks(disks, ranges, 1<<20, count), "deterministic")
	}
}

// BenchmarkResyncDiff2GiB measures the bytes a resync sends for a 2 GiB
// disk whose blocks differ in 1% of its 4 KiB blocks, scattered at random
// (the worst case for 64 KiB hash leaves): leaf diff, then sub-block
// refinement. The disks are sparse apart from the differing blocks.
func BenchmarkResyncDiff2GiB(b *testing.B) {
	const size = 2 << 30
	p := mustResyncPair(b, size, size/subBlock/100, 3)
	var sent, exchanged int64
	b.ResetTimer()
	for b.Loop() {
		ranges, ex := p.diff(b)
		sent, exchanged = 0, ex
		for _, br := range ranges {
			sent += br.Length
		}
	}
	b.ReportMetric(100*float64(sent)/size, "%sent")
	b.ReportMetric(100*float64(exchanged)/size, "%hashes")
	b.ReportMetric(float64(size)/(1<<20)/(b.Elapsed().Seconds()/float64(b.N)), "MB/s")
}
