package hostsync

import (
	"fmt"
	"sync"
	"time"

	"github.com/siterecovery/siterecovery/hostsync/disk"
	"github.com/siterecovery/siterecovery/hostsync/hashtree"
)

// Integrity (docs/architecture.md, docs/operations.md "Integrity"): the source proves, cycle by cycle, that
// the replica equals its disks.
//
//   - The source keeps one hash tree per disk exact at each cycle it closes
//     (keptTree, closeCycleKept: the leaves a cycle wrote are re-hashed while
//     writes wait, so the cost grows with the changes), and sends the roots
//     with the cycle's last batch (format version 3, Cycle.Roots, named by
//     Cycle.RootsHash).
//   - The recovery host, after applying a cycle that carries roots,
//     compares its replica's roots with them; a difference is reported as
//     resync_required (the control plane raises ResyncRequired and Critical;
//     `vm resync` repairs the replica by block hashes) and the point is not
//     reported.
//   - `vm verify` compares both sides now, at one cycle: the source's kept
//     trees at its last closed cycle, the replica re-hashed from its images
//     (a scrub: it finds a corrupted block no cycle touched, which the
//     incrementally kept trees cannot) once it applied that cycle.

// keepRoots bounds how many closed cycles' roots the source remembers (the
// cycles not yet applied; older ones are sent without roots).
const keepRoots = 256

// sourceIntegrity is the source side's kept trees and the roots of the
// cycles closed with them. Safe for concurrent use: the VM controller
// closes cycles, the verify handler takes snapshots.
type sourceIntegrity struct {
	mu    sync.Mutex
	kept  map[string]*keptTree
	roots map[uint64]map[string]string // cycle → disk → root
	disks int
	// verify answers the VM's verify requests (verify.go).
	verify Subscription
}

func newSourceIntegrity(disks int) *sourceIntegrity {
	return &sourceIntegrity{kept: map[string]*keptTree{}, roots: map[uint64]map[string]string{}, disks: disks}
}

// integrity is the source side's integrity state, made on first use.
func (s *sourceSide) integrity() *sourceIntegrity {
	if s.integ == nil {
		s.integ = newSourceIntegrity(len(s.disks))
	}
	return s.integ
}

// closeKept closes a cycle on d (CloseCycle's contract) and, when the
// disk's kept tree is exact at it, records the disk's root for the cycle.
// A missing or invalid tree is built from the image first.
func (c *vmCtl) closeKept(d *disk.Tracked, at time.Time, app bool) (uint64, error) {
	in := c.src.integrity()
	in.mu.Lock()
	defer in.mu.Unlock()
	kt := in.kept[d.Name()]
	if kt == nil || !kt.valid {
		var err error
		if kt, err = startKeptTree(d); err != nil {
			c.warnOnce("integrity", err)
		}
		in.kept[d.Name()] = kt
	}
	seq, exact, err := closeCycleKept(d, at, app, kt, c.logger)
	if err != nil {
		return seq, err
	}
	if !exact {
		delete(in.roots, seq) // none of an earlier numbering either
		return seq, nil
	}
	r := in.roots[seq]
	if r == nil {
		r = map[string]string{}
		in.roots[seq] = r
		delete(in.roots, seq-keepRoots)
	}
	r[d.Name()] = kt.tree.Root()
	return seq, nil
}

// forget drops the kept trees and the roots: the change log was reset
// (initial replication, resync), so cycle numbers may be reused and the
// trees no longer account for every change.
func (in *sourceIntegrity) forget() {
	in.mu.Lock()
	defer in.mu.Unlock()
	clear(in.kept)
	clear(in.roots)
}

// rootsFor returns the roots of cycle seq if every disk's kept tree was
// exact at it, else nil (the cycle goes without roots, unchecked).
func (in *sourceIntegrity) rootsFor(seq uint64) map[string]string {
	in.mu.Lock()
	defer in.mu.Unlock()
	r := in.roots[seq]
	if len(r) != in.disks {
		return nil
	}
	out := make(map[string]string, len(r))
	for k, v := range r {
		out[k] = v
	}
	return out
}

// sourceSnapshot is a copy of the kept trees at one cycle.
type sourceSnapshot struct {
	seq   uint64
	trees map[string]*hashtree.Tree
}

// snapshotAt rebuilds the kept trees as they were at cycle seq, if every
// disk's tree was exact at it and seq is among the last keepUndo exact
// cycles.
func (in *sourceIntegrity) snapshotAt(seq uint64) (sourceSnapshot, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	snap := sourceSnapshot{seq: seq, trees: map[string]*hashtree.Tree{}}
	for name, kt := range in.kept {
		if kt == nil {
			return sourceSnapshot{}, fmt.Errorf("%w: disk %s has no kept tree", ErrNotVerifiable, name)
		}
		leaves, ok := kt.leavesAt(seq)
		if !ok {
			return sourceSnapshot{}, fmt.Errorf("%w: disk %s's kept tree is exact at cycle %d, not at %d", ErrNotVerifiable, name, kt.seq, seq)
		}
		snap.trees[name] = hashtree.FromHashes(kt.tree.Size(), leaves)
	}
	if len(snap.trees) != in.disks || in.disks == 0 {
		return sourceSnapshot{}, fmt.Errorf("%w: %d of %d disks have a kept tree", ErrNotVerifiable, len(snap.trees), in.disks)
	}
	return snap, nil
}
