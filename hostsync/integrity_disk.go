package hostsync

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/siterecovery/siterecovery/hostsync/cycle"
	"github.com/siterecovery/siterecovery/hostsync/disk"
	"github.com/siterecovery/siterecovery/hostsync/hashtree"
)

// keptTree is a hash tree of a tracked disk kept exact at the cycles the
// disk closes with closeCycleKept: at each such close, while writes wait,
// the leaves written since the tree's last fold are re-hashed from the
// image, so the tree describes the disk exactly at that cycle's close, at a
// cost that grows with the changes. Owned by sourceIntegrity (under its
// mutex).
type keptTree struct {
	tree *hashtree.Tree
	// mark is where in the disk's changes the tree stands: every change
	// after it is a change record (or a close) still in the log, or the
	// tree can no longer be made exact.
	mark disk.Mark
	// seq is the cycle the tree is exact at (0: none yet).
	seq uint64
	// valid is false once a fold found changes it cannot account for (a
	// change log reset, an untracked write, cycles dropped unfolded).
	valid bool
	// undo holds, for the last keepUndo exact cycles, the leaf hashes
	// each fold replaced, so the tree at an earlier exact cycle can be
	// rebuilt (verify compares at the replica's cycle).
	undo map[uint64]foldUndo
}

// keepUndo is how many exact cycles back a kept tree can be rolled.
const keepUndo = 16

// foldUndo is what one fold changed: the leaves' previous hashes, and the
// cycle the tree was exact at before (0: none).
type foldUndo struct {
	prev   uint64
	leaves []leafUndo
}

type leafUndo struct {
	i int
	h hashtree.Hash
}

// leavesAt returns the tree's leaves as they were at exact cycle seq, or
// false when seq is not one of the last exact cycles.
func (kt *keptTree) leavesAt(seq uint64) ([]hashtree.Hash, bool) {
	if !kt.valid || kt.seq == 0 || seq > kt.seq {
		return nil, false
	}
	leaves := kt.tree.Leaves()
	for cur := kt.seq; cur != seq; {
		u, ok := kt.undo[cur]
		if !ok || u.prev == 0 || u.prev < seq {
			return nil, false
		}
		for _, l := range u.leaves {
			leaves[l.i] = l.h
		}
		cur = u.prev
	}
	return leaves, true
}

// startKeptTree hashes the disk's image as it is now, without holding
// writes: a leaf written meanwhile is in a record after the mark taken
// first, so the next closeCycleKept re-hashes it and the tree is exact at
// that close. The read costs the disk's allocated data, once.
func startKeptTree(d *disk.Tracked) (*keptTree, error) {
	m, err := d.Mark()
	if err != nil {
		return nil, err
	}
	kt := &keptTree{mark: m, valid: true}
	f, err := os.Open(d.Path()) // its own offset for SEEK_DATA/SEEK_HOLE
	if err != nil {
		return nil, fmt.Errorf("disk %s: hash image: %w", d.Name(), err)
	}
	defer f.Close()
	kt.tree, err = hashtree.Build(f, d.Size())
	if err != nil {
		return nil, fmt.Errorf("disk %s: %w", d.Name(), err)
	}
	return kt, nil
}

// closeCycleKept is CloseCycle (same log record, same durability, same
// numbering) that also folds into kt every change since kt's last fold,
// so that kt describes the disk exactly at the returned cycle's close
// (disk.Tracked.CloseCycleFolded): the leaves to re-hash are listed and the
// cycle closed under the disk's write lock; they are hashed after it is
// released, while writes to those leaves (and only those) wait, so the
// guest's other writes go on. It reports whether kt is exact at the
// returned cycle. A kt that cannot be made exact is marked invalid and the
// cycle is closed all the same; a nil or invalid kt is a plain close.
func closeCycleKept(d *disk.Tracked, at time.Time, appConsistent bool, kt *keptTree, logger zerolog.Logger) (uint64, bool, error) {
	if kt == nil || !kt.valid {
		seq, err := d.CloseCycle(at, appConsistent)
		return seq, false, err
	}
	seq, exact, err := d.CloseCycleFolded(at, appConsistent, kt.mark, &keptFold{kt: kt, disk: d.Name(), logger: logger})
	if err != nil {
		return 0, false, err
	}
	if !exact {
		kt.valid = false
	}
	return seq, exact, nil
}

// keptFold folds the changes of one close into a kept tree: the
// disk.Folder closeCycleKept hands the disk.
type keptFold struct {
	kt     *keptTree
	disk   string
	logger zerolog.Logger
	leaves []int // the leaves Plan listed, sorted
}

// BlockSize is the tree's leaf size: the disk holds writes by leaf.
func (f *keptFold) BlockSize() int64 { return hashtree.LeafSize }

// Plan lists the leaves the changes touched.
func (f *keptFold) Plan(changed []cycle.Extent) []int {
	f.leaves = f.kt.tree.DirtyLeaves(changed)
	return f.leaves
}

// Fold re-hashes the planned leaves from the image and keeps their
// previous hashes, so that the tree can be rolled back to the cycle it was
// exact at before; the tree is then exact at cycle seq, at mark next.
func (f *keptFold) Fold(img io.ReaderAt, changed []cycle.Extent, seq uint64, next disk.Mark) bool {
	kt := f.kt
	undo := make([]leafUndo, len(f.leaves))
	for j, i := range f.leaves {
		undo[j] = leafUndo{i: i, h: kt.tree.Leaf(i)}
	}
	if err := kt.tree.Update(img, changed); err != nil {
		f.logger.Warn().Err(err).Str("disk", f.disk).Msg("kept hash tree: fold failed")
		kt.valid = false
		return false
	}
	if kt.undo == nil {
		kt.undo = map[uint64]foldUndo{}
	}
	kt.undo[seq] = foldUndo{prev: kt.seq, leaves: undo}
	delete(kt.undo, seq-keepUndo)
	kt.mark, kt.seq = next, seq
	return true
}
