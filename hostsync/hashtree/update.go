package hashtree

import (
	"errors"
	"io"
	"runtime"
	"slices"
	"sync"

	"github.com/siterecovery/siterecovery/hostsync/cycle"
	"github.com/siterecovery/siterecovery/hostsync/sparse"
)

// Update re-hashes the leaves the extents touch and their ancestors: the
// cost grows with the extents, not with the disk. A leaf that a single
// extent covers whole is hashed from that extent (its Data, or zeros); any
// other leaf is read from r, the disk after the extents were written.
// Extents past the end are clipped; the extents' Disk is not looked at.
func (t *Tree) Update(r io.ReaderAt, extents []cycle.Extent) error {
	return t.Apply(r, t.Plan(extents))
}

// Plan is an update's work (Tree.Plan makes it, Tree.Apply finishes it): the leaves the extents touch (sorted), the
// one extent that touches each (nil when several do), and the hashes of
// the leaves an extent covers whole, made from the extents' bytes, so
// before the image is written (known[j] is leaf dirty[j]'s when ok[j]).
type Plan struct {
	dirty []int
	cover map[int]*cycle.Extent
	known []Hash
	ok    []bool
}

// Plan lists the leaves an update by extents touches and hashes those the
// extents cover whole, from the extents' bytes: it reads nothing of the tree
// but its size, so it can run on other CPUs while the image is written.
// Apply then finishes the update.
func (t *Tree) Plan(extents []cycle.Extent) *Plan {
	p := &Plan{}
	p.dirty, p.cover = t.dirtyLeaves(extents)
	p.known, p.ok = make([]Hash, len(p.dirty)), make([]bool, len(p.dirty))
	_ = parallel(len(p.dirty), func(_, j int) error {
		off := int64(p.dirty[j]) * LeafSize
		p.known[j], p.ok[j] = LeafFromExtent(p.cover[p.dirty[j]], off, t.size)
		return nil
	})
	return p
}

// Apply finishes the update Plan began: it hashes the plan's other leaves
// from r (the disk after the extents were written), sets the leaves and
// re-hashes their ancestors. Update is Plan then Apply.
func (t *Tree) Apply(r io.ReaderAt, p *Plan) error {
	bufs := make([][]byte, runtime.GOMAXPROCS(0))
	err := parallel(len(p.dirty), func(w, j int) error {
		if !p.ok[j] {
			if bufs[w] == nil {
				bufs[w] = make([]byte, LeafSize)
			}
			h, err := hashLeafAt(r, bufs[w], int64(p.dirty[j])*LeafSize, t.size, treeHasher())
			if err != nil {
				return err
			}
			p.known[j] = h
		}
		return nil
	})
	if err != nil {
		return err
	}
	for j, i := range p.dirty {
		t.levels[0][i] = p.known[j]
	}
	dirty := p.dirty
	for l := 1; l < len(t.levels); l++ {
		dirty = parentsOf(dirty)
		for _, i := range dirty {
			t.levels[l][i] = nodeOf(t.levels[l-1], i)
		}
	}
	return nil
}

// parallelLeaves is the number of leaves from which hashing runs on every
// CPU.
const parallelLeaves = 64

// parallel runs f(w, j) for j in 0..n-1, split among the CPUs when n is
// large (each j runs once, on worker w < GOMAXPROCS), and joins the errors.
func parallel(n int, f func(w, j int) error) error {
	workers := min(runtime.GOMAXPROCS(0), n/parallelLeaves+1)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for j := w * n / workers; j < (w+1)*n/workers; j++ {
				if err := f(w, j); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// LeafFromExtent hashes the leaf at off of a disk of size bytes from e when
// e covers all of it (up to the disk's end) and carries its bytes (or is a
// zero extent); ok is false otherwise.
func LeafFromExtent(e *cycle.Extent, off, size int64) (Hash, bool) {
	end := min(off+LeafSize, size)
	if e == nil || e.Offset > off || e.End() < end {
		return Hash{}, false
	}
	if e.Zero {
		return zeroLeafHash(), true
	}
	if int64(len(e.Data)) != e.Length {
		return Hash{}, false
	}
	block := e.Data[off-e.Offset : end-e.Offset]
	if end-off < LeafSize {
		padded := make([]byte, LeafSize)
		copy(padded, block)
		block = padded
	}
	if sparse.IsZero(block) {
		return zeroLeafHash(), true
	}
	return leafHash(block), true
}

// DirtyLeaves lists the leaves the extents touch, sorted (those an Update
// by them re-hashes).
func (t *Tree) DirtyLeaves(extents []cycle.Extent) []int {
	dirty, _ := t.dirtyLeaves(extents)
	return dirty
}

// dirtyLeaves lists the leaves the extents touch, sorted, and for each the
// one extent that touches it (nil when several do).
func (t *Tree) dirtyLeaves(extents []cycle.Extent) ([]int, map[int]*cycle.Extent) {
	var dirty []int
	cover := map[int]*cycle.Extent{}
	for k := range extents {
		e := &extents[k]
		end := min(e.End(), t.size)
		for off := e.Offset - e.Offset%LeafSize; off < end; off += LeafSize {
			i := int(off / LeafSize)
			if _, seen := cover[i]; seen {
				cover[i] = nil
				continue
			}
			cover[i] = e
			dirty = append(dirty, i)
		}
	}
	slices.Sort(dirty)
	return dirty, cover
}

// parentsOf lists the parents of the sorted nodes, sorted, once each.
func parentsOf(sorted []int) []int {
	out := make([]int, 0, len(sorted))
	for _, i := range sorted {
		if n := len(out); n == 0 || out[n-1] != i/2 {
			out = append(out, i/2)
		}
	}
	return out
}
