package hostsync

import (
	"fmt"
	"github.com/siterecovery/siterecovery/hostsync/cycle"
	"github.com/siterecovery/siterecovery/hostsync/hashtree"
	"os"
	"slices"
	"time"
)

// keptTree is a hash tree of a tracked disk kept exact at the cycles the
// disk closes with closeCycleKept: at each such close, while writes wait,
// the leaves written since the tree's last fold are re-hashed from the
// image, so the tree describes the disk exactly at that cycle's close, at a
// cost that grows with the changes. Owned by sourceIntegrity (under its
// mutex).
type keptTree struct {
	tree *hashtree.Tree
	// gen is the disk's write generation (TrackedDisk.gen) the tree
	// accounts for: every generation after it is a change record (or a
	// close) still in the log, or the tree can no longer be made exact.
	gen uint64
	// next is the first cycle whose records the tree may lack.
	next uint64
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
// writes: a leaf written meanwhile is in a record after the snapshot taken
// first, so the next closeCycleKept re-hashes it and the tree is exact at
// that close. The read costs the disk's allocated data, once.
func (d *TrackedDisk) startKeptTree() (*keptTree, error) {
	d.mu.Lock()
	if err := d.trackingLocked(); err != nil {
		d.mu.Unlock()
		return nil, err
	}
	kt := &keptTree{gen: d.gen - uint64(len(d.open)), next: d.nextSeq, valid: true}
	d.mu.Unlock()
	f, err := os.Open(d.path) // its own offset for SEEK_DATA/SEEK_HOLE
	if err != nil {
		return nil, fmt.Errorf("disk %s: hash image: %w", d.name, err)
	}
	defer f.Close()
	kt.tree, err = hashtree.Build(f, d.size)
	if err != nil {
		return nil, fmt.Errorf("disk %s: %w", d.name, err)
	}
	return kt, nil
}

// closeCycleKept is CloseCycle (same log record, same durability, same
// numbering) that also folds into kt every change since kt's last fold,
// so that kt describes the disk exactly at the returned cycle's close. The
// leaves to re-hash are listed and the cycle closed under the write lock;
// they are hashed after it is released, while writes to those leaves (and
// only those) wait (folding), so the guest's other writes go on. It
// reports whether kt is exact at the returned cycle. A kt that cannot be
// made exact is marked invalid and the cycle is closed all the same.
func (d *TrackedDisk) closeCycleKept(at time.Time, appConsistent bool, kt *keptTree) (uint64, bool, error) {
	d.mu.Lock()
	if err := d.trackingLocked(); err != nil {
		d.mu.Unlock()
		return 0, false, err
	}
	var changed []cycle.Extent
	exact := false
	if kt != nil && kt.valid {
		changed, exact = d.foldPlanLocked(kt)
		kt.valid = exact
	}
	seq, err := d.closeLocked(at, appConsistent)
	if err != nil {
		d.mu.Unlock()
		return 0, false, err
	}
	closeGen, next := d.gen, d.nextSeq
	if exact {
		d.folding = kt.tree.DirtyLeaves(changed)
	}
	d.mu.Unlock()
	// The close marker is synced while the leaves are hashed.
	synced := make(chan error, 1)
	go func() { synced <- d.sync() }()
	if exact {
		undo, ok := d.fold(kt, changed)
		exact = ok
		if ok {
			if kt.undo == nil {
				kt.undo = map[uint64]foldUndo{}
			}
			kt.undo[seq] = foldUndo{prev: kt.seq, leaves: undo}
			delete(kt.undo, seq-keepUndo)
			kt.gen, kt.next, kt.seq = closeGen, next, seq
		} else {
			kt.valid = false
		}
	}
	if err := <-synced; err != nil {
		return 0, false, err
	}
	return seq, exact, nil
}

// foldPlanLocked lists the change records since kt's fold: those of the
// closed cycles from kt.next on and the open ones. It returns false when
// the log does not hold every change since (the generations do not add
// up). Called with mu held.
func (d *TrackedDisk) foldPlanLocked(kt *keptTree) ([]cycle.Extent, bool) {
	var changed []cycle.Extent
	count := uint64(len(d.open))
	for _, c := range d.closed {
		if c.seq < kt.next {
			continue
		}
		count += uint64(len(c.recs)) + 1
		changed = appendRecExtents(changed, c.recs)
	}
	missing := kt.next < d.nextSeq && (len(d.closed) == 0 || d.closed[0].seq > kt.next)
	if missing || d.gen-kt.gen != count {
		return nil, false
	}
	return appendRecExtents(changed, d.open), true
}

// fold re-hashes into kt the leaves d.folding holds (those of changed)
// from the image, then lets the writes that wait for them go on, and
// returns the leaves' previous hashes.
func (d *TrackedDisk) fold(kt *keptTree, changed []cycle.Extent) ([]leafUndo, bool) {
	defer func() {
		d.mu.Lock()
		d.folding = nil
		d.foldDone.Broadcast()
		d.mu.Unlock()
	}()
	undo := make([]leafUndo, len(d.folding))
	for j, i := range d.folding {
		undo[j] = leafUndo{i: i, h: kt.tree.Leaf(i)}
	}
	if err := kt.tree.Update(d.img, changed); err != nil {
		d.logger.Warn().Err(err).Str("disk", d.name).Msg("kept hash tree: fold failed")
		return nil, false
	}
	return undo, true
}

// waitFoldLocked waits while a fold hashes a leaf that [off, off+length)
// touches. Called with mu held (Wait releases it meanwhile).
func (d *TrackedDisk) waitFoldLocked(off, length int64) {
	for d.folding != nil && touchesLeaves(d.folding, off, length) {
		d.foldDone.Wait()
	}
}

// touchesLeaves says whether [off, off+length) touches one of the sorted
// leaves.
func touchesLeaves(sorted []int, off, length int64) bool {
	first := int(off / hashtree.LeafSize)
	last := int((off + max(length, 1) - 1) / hashtree.LeafSize)
	i, _ := slices.BinarySearch(sorted, first)
	return i < len(sorted) && sorted[i] <= last
}

func appendRecExtents(out []cycle.Extent, recs []hrlRec) []cycle.Extent {
	for _, r := range recs {
		out = append(out, cycle.Extent{Offset: r.off(), Length: r.length()})
	}
	return out
}
