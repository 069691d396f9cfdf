package replica

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/hostsync/cycle"
	"github.com/siterecovery/siterecovery/hostsync/cycle/cycletest"
)

// preimageBatches feeds c's extents to Preimage n at a time, as the
// receiver does with each batch as it arrives.
func preimageBatches(t *testing.T, r *Replica, c cycle.Cycle, n int) {
	t.Helper()
	for i := 0; i == 0 || i*n < len(c.Extents); i++ {
		batch := c.Extents[min(i*n, len(c.Extents)):min((i+1)*n, len(c.Extents))]
		require.NoError(t, r.Preimage(c.Epoch, c.Seq, i, batch))
	}
}

// TestReplicaPreimagedApplyKeepsEveryPoint: cycles whose undo data was
// prepared batch by batch before their apply leave the same images and
// the same restorable points as cycles applied whole, and the prepared
// files really are what the applies used.
func TestReplicaPreimagedApplyKeepsEveryPoint(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := mustOpenReplica(t, dir, Options{})
	h := newReplicaHistory(51)
	h.applyN(t, r, 1)
	for range 10 {
		c := h.next()
		preimageBatches(t, r, c, 3)
		p, err := r.Apply(context.Background(), c)
		require.NoError(t, err)
		h.applied(c, p)
	}
	require.Equal(t, uint64(10), r.preimaged)
	requireImages(t, r, h.model)
	for _, p := range r.Points() {
		requirePoint(t, r, p.ID, h.snaps[p.ID])
		require.Equal(t, p.Roots, rootsOf(t, h.snaps[p.ID]))
	}
	requireNoStrayUndo(t, r)
	require.NoError(t, r.Close())
	r = mustOpenReplica(t, dir, Options{})
	requireImages(t, r, h.model)
	for _, p := range r.Points() {
		requirePoint(t, r, p.ID, h.snaps[p.ID])
	}
}

// TestReplicaPreimageNotMatchingIsNotUsed: a preparation that does not hold
// exactly the applied cycle's ranges (batches missing, a cycle sent again
// with other extents) is dropped, and the apply writes its own undo data.
func TestReplicaPreimageNotMatchingIsNotUsed(t *testing.T) {
	t.Parallel()
	r := mustOpenReplica(t, t.TempDir(), Options{})
	h := newReplicaHistory(52)
	h.applyN(t, r, 1)

	partial := h.next()
	for len(partial.Extents) < 4 {
		partial = h.next()
	}
	require.NoError(t, r.Preimage(partial.Epoch, partial.Seq, 0, partial.Extents[:2]))
	p, err := r.Apply(context.Background(), partial)
	require.NoError(t, err)
	h.applied(partial, p)

	other := h.next()
	sent := h.next() // same sequence, other extents: what a resend after a new close could carry
	sent.Seq = other.Seq
	preimageBatches(t, r, sent, 2)
	p, err = r.Apply(context.Background(), other)
	require.NoError(t, err)
	h.applied(other, p)

	require.Zero(t, r.preimaged)
	requireImages(t, r, h.model)
	for _, pt := range r.Points() {
		requirePoint(t, r, pt.ID, h.snaps[pt.ID])
	}
	requireNoStrayUndo(t, r)
}

// TestReplicaPreimageRefusesWithoutChangingAnything: a preimage on a first
// copy, of a cycle that is not the next, of a batch out of order, or with
// an extent past the disk fails with a clear error, writes nothing to the
// images and leaves no preparation behind.
func TestReplicaPreimageRefusesWithoutChangingAnything(t *testing.T) {
	t.Parallel()
	r := mustOpenReplica(t, t.TempDir(), Options{})
	h := newReplicaHistory(53)
	first := h.next()
	require.ErrorIs(t, r.Preimage(first.Epoch, first.Seq, 0, first.Extents), ErrState, "a first copy has no undo data")
	h.applyN(t, r, 2)

	c := h.next()
	require.ErrorIs(t, r.Preimage(c.Epoch, c.Seq+1, 0, c.Extents), cycle.ErrSeqGap)
	require.ErrorIs(t, r.Preimage(c.Epoch, c.Seq-1, 0, c.Extents), cycle.ErrApplied)
	require.ErrorIs(t, r.Preimage(c.Epoch, c.Seq, 1, c.Extents), cycle.ErrInvalid, "batch 1 before batch 0")
	require.NoError(t, r.Preimage(c.Epoch, c.Seq, 0, nil))
	require.ErrorIs(t, r.Preimage(c.Epoch, c.Seq, 2, c.Extents), cycle.ErrInvalid, "batch 2 after batch 0")
	require.Nil(t, r.prep, "an out-of-order batch drops the preparation")
	past := cycle.Extent{Disk: "sda", Offset: cycletest.Disks["sda"] - 10, Length: 20, Data: make([]byte, 20)}
	require.NoError(t, r.Preimage(c.Epoch, c.Seq, 0, nil))
	require.ErrorIs(t, r.Preimage(c.Epoch, c.Seq, 1, []cycle.Extent{past}), cycle.ErrInvalid)
	require.Nil(t, r.prep)
	requireImages(t, r, h.model)
	requireNoStrayUndo(t, r)

	p, err := r.Apply(context.Background(), c)
	require.NoError(t, err)
	h.applied(c, p)
	requireImages(t, r, h.model)
}

// TestReplicaCrashWhilePreimaging: a process killed with a preparation
// under way reopens at its last point with no trace of it, and the cycle
// applies after.
func TestReplicaCrashWhilePreimaging(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r, err := OpenWithOptions(dir, "web01", replicaTestDiskSpecs(), zerolog.Nop(), Options{})
	require.NoError(t, err)
	h := newReplicaHistory(54)
	h.applyN(t, r, 2)
	c := h.next()
	preimageBatches(t, r, c, 2)
	_, err = os.Stat(filepath.Join(dir, undoDir, prepName+".tmp"))
	require.NoError(t, err, "the preparation is on disk")
	require.NoError(t, r.closeFiles()) // killed: no cleanup runs

	r = mustOpenReplica(t, dir, Options{})
	requireImages(t, r, h.model)
	requireNoStrayUndo(t, r)
	p, err := r.Apply(context.Background(), c)
	require.NoError(t, err)
	h.applied(c, p)
	for _, pt := range r.Points() {
		requirePoint(t, r, pt.ID, h.snaps[pt.ID])
	}
}
