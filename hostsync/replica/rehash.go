package replica

import (
	"fmt"
	"os"

	"github.com/siterecovery/siterecovery/hostsync/cycle"
	"github.com/siterecovery/siterecovery/hostsync/hashtree"
)

// RehashLeaves re-reads leaves [first, first+n) of a disk's image and
// hashes them, ignoring the incrementally kept tree: a scrub, which finds a
// block corrupted behind the agent's back that no cycle rewrote. The leaves
// describe the replica at its last applied (epoch, seq), returned with
// them: applies wait meanwhile. The range is clipped to the disk; the
// caller bounds n. Holes are not read. An unknown disk is an error wrapping cycle.ErrInvalid.
func (r *Replica) RehashLeaves(disk string, first, n int) (epoch, seq uint64, size int64, leaves []byte, err error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		return 0, 0, 0, nil, ErrClosed
	}
	if r.broken {
		return 0, 0, 0, nil, fmt.Errorf("%w: an operation is being recovered", ErrState)
	}
	spec, ok := r.disks[disk]
	if !ok {
		return 0, 0, 0, nil, fmt.Errorf("%w: no disk %q", cycle.ErrInvalid, disk)
	}
	leaves, err = rehashRange(r.ImagePath(disk), spec.Size, first, n)
	return r.state.Epoch, r.state.Seq, spec.Size, leaves, err
}

// rehashRange hashes leaves [first, first+n) (clipped) of the image at
// path, skipping holes; 32 bytes per leaf.
func rehashRange(path string, size int64, first, n int) ([]byte, error) {
	total := hashtree.LeafCount(size)
	first = min(max(first, 0), total)
	end := min(first+max(n, 0), total)
	f, err := os.Open(path) // its own offset for SEEK_DATA/SEEK_HOLE
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return hashtree.HashLeaves(f, size, first, end)
}

// RehashRoots re-reads every disk's image and returns the roots of the
// trees built from them (a scrub) with the point they describe. A planned
// failover verifies with them, so a corrupted block no cycle touched is
// found before the replica is promoted.
func (r *Replica) RehashRoots() (epoch, seq uint64, roots map[string]string, err error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		return 0, 0, nil, ErrClosed
	}
	roots = map[string]string{}
	for _, name := range r.order {
		t, err := hashtree.BuildFile(r.ImagePath(name), r.disks[name].Size)
		if err != nil {
			return 0, 0, nil, fmt.Errorf("rehash %s: %w", name, err)
		}
		roots[name] = t.Root()
	}
	return r.state.Epoch, r.state.Seq, roots, nil
}

// SubHashes hashes the 4 KiB sub-blocks of the given leaves of a disk at
// the replica's latest point (for a resync's refinement).
func (r *Replica) SubHashes(disk string, leaves []int) ([]byte, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		return nil, ErrClosed
	}
	f, ok := r.images[disk]
	if !ok {
		return nil, fmt.Errorf("%w: no disk %q", cycle.ErrInvalid, disk)
	}
	return hashtree.SubHashes(f, r.disks[disk].Size, leaves)
}
