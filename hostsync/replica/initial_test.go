package replica

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/hostsync/cycle"
	"github.com/siterecovery/siterecovery/hostsync/cycle/cycletest"
	"github.com/siterecovery/siterecovery/hostsync/hashtree"
	"github.com/siterecovery/siterecovery/hostsync/sparse"
)

// initialChunks cuts the disks of the model (random data, some zero runs)
// into Initial cycles of chunk bytes, numbered from 1.
func initialChunks(rng *rand.Rand, m cycletest.Model, chunk int64) []cycle.Cycle {
	var out []cycle.Cycle
	for _, name := range []string{"sda", "sdb"} {
		data := m[name]
		for off := int64(0); off < int64(len(data)); off += chunk {
			n := min(chunk, int64(len(data))-off)
			p := data[off : off+n]
			if rng.IntN(4) > 0 { // leave a quarter of the chunks zero
				for i := range p {
					p[i] = byte(rng.Uint32())
				}
			}
			c := cycle.Cycle{VM: "web01", Epoch: 1, Seq: uint64(len(out) + 1), ClosedAt: replicaTestTime0, Initial: true,
				Extents: []cycle.Extent{chunkExtent(name, off, p)}}
			out = append(out, c)
		}
	}
	return out
}

// chunkExtent is a chunk as initial replication ships it: a zero extent
// when it is all zeros, else its data (a random chunk holds no zero block).
func chunkExtent(disk string, off int64, p []byte) cycle.Extent {
	if sparse.IsZero(p) {
		return cycle.Extent{Disk: disk, Offset: off, Length: int64(len(p)), Zero: true}
	}
	return cycle.Extent{Disk: disk, Offset: off, Length: int64(len(p)), Data: p}
}

func TestReplicaInitialCopyIsDurableOnlyAfterSync(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(7, 8))
	model := cycletest.NewModel()
	chunks := initialChunks(rng, model, 96<<10) // not a multiple of the leaf
	require.Greater(t, len(chunks), 8)

	r, err := Open(dir, "web01", replicaTestDiskSpecs(), zerolog.Nop())
	require.NoError(t, err)
	require.True(t, r.FirstCopy())
	for _, c := range chunks[:4] {
		require.NoError(t, r.ApplyInitial(ctx, c))
	}
	require.NoError(t, r.SyncInitial())
	for _, c := range chunks[4:7] {
		require.NoError(t, r.ApplyInitial(ctx, c))
	}
	_, seq := r.LastApplied()
	require.Equal(t, uint64(7), seq, "applied at once")
	require.NoError(t, r.closeFiles()) // a crash: nothing synced since chunk 4

	r = mustOpenReplica(t, dir, Options{})
	_, seq = r.LastApplied()
	require.Equal(t, uint64(4), seq, "only the synced chunks are durable")
	// The trees were dropped before the unsynced writes: rebuilt from the
	// images, they describe what the images hold.
	for _, name := range []string{"sda", "sdb"} {
		f := r.images[name]
		built, err := hashtree.Build(f, r.disks[name].Size)
		require.NoError(t, err)
		require.Equal(t, built.Root(), r.Roots()[name], "disk %s tree after the crash", name)
	}

	// Delivered again, the chunks apply again; a tracked cycle on top makes
	// the first point, and the images equal the model.
	err = r.ApplyInitial(ctx, chunks[2])
	require.ErrorIs(t, err, cycle.ErrApplied)
	for _, c := range chunks[4:] {
		require.NoError(t, r.ApplyInitial(ctx, c))
	}
	h := &replicaHistory{rng: rng, model: model, snaps: map[string]cycletest.Model{}, clock: replicaTestTime0, epoch: 1, seq: uint64(len(chunks))}
	h.applyN(t, r, 1) // Apply syncs the initial chunks first
	require.Len(t, r.Points(), 1)
	require.False(t, r.FirstCopy())

	// With a point, an Initial cycle (a resync) takes the undo path.
	err = r.ApplyInitial(ctx, cycle.Cycle{VM: "web01", Epoch: 1, Seq: h.seq + 1, Initial: true, ClosedAt: replicaTestTime0})
	require.ErrorIs(t, err, cycle.ErrInvalid)
	requireImages(t, r, h.model)
}

func TestReplicaInitialRefusesBadChunksAndChangesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := mustOpenReplica(t, t.TempDir(), Options{})
	rng := rand.New(rand.NewPCG(9, 10))
	model := cycletest.NewModel()
	chunks := initialChunks(rng, model, 256<<10)
	require.NoError(t, r.ApplyInitial(ctx, chunks[0]))
	require.NoError(t, r.SyncInitial())
	roots := r.Roots()

	bad := []cycle.Cycle{
		{VM: "web01", Epoch: 1, Seq: 3, Initial: true},                                         // a gap
		{VM: "db01", Epoch: 1, Seq: 2, Initial: true},                                          // another VM
		{VM: "web01", Epoch: 1, Seq: 2, Initial: false},                                        // not Initial
		{VM: "web01", Epoch: 1, Seq: 2, Initial: true, Extents: []cycle.Extent{{Disk: "sdz"}}}, // no such disk
		{VM: "web01", Epoch: 1, Seq: 2, Initial: true, Extents: []cycle.Extent{{Disk: "sdb", Offset: 699_999, Length: 2, Data: []byte{1, 2}}}},
	}
	for _, c := range bad {
		require.Error(t, r.ApplyInitial(ctx, c), "cycle %+v", c)
	}
	_, seq := r.LastApplied()
	require.Equal(t, uint64(1), seq)
	require.Equal(t, roots, r.Roots())
}
