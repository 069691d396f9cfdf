package hostsync

import (
	"github.com/siterecovery/siterecovery/hostsync/cycle"
	"github.com/siterecovery/siterecovery/hostsync/disk"
	"github.com/siterecovery/siterecovery/hostsync/hashtree"
)

// An initial replication reads every byte of the disks once; the source
// hashes the chunks as it reads them, so that its kept trees (integrity.go)
// are ready when the first tracked cycle closes instead of being built by
// reading the whole disks again at that close, which the first recovery
// point would wait for. The reasoning is startKeptTree's: the tree stands
// at the disk's mark right after the change log's reset, and every
// write after it is a change record that the first close folds in, so the
// tree is exact at that close whether a chunk was read before or after a
// write to it. An initial replication resumed by another process did not
// hash the chunks read before it and leaves the kept trees to
// startKeptTree.

// irTree collects one disk's leaf hashes from the chunks read.
type irTree struct {
	size   int64
	mark   disk.Mark // the disk's right after the change log's reset
	leaves []hashtree.Hash
	set    []bool
	hashed int // distinct leaves set
}

// irTrees are the disks' irTree by name; nil collects nothing.
type irTrees map[string]*irTree

// add hashes the leaves of a chunk's extents (chunks are leaf-aligned, so
// each leaf is covered by one extent).
func (ts irTrees) add(disk string, extents []cycle.Extent) {
	t := ts[disk]
	if t == nil {
		return
	}
	for k := range extents {
		e := &extents[k]
		for off := e.Offset - e.Offset%hashtree.LeafSize; off < e.End() && off < t.size; off += hashtree.LeafSize {
			i := int(off / hashtree.LeafSize)
			h, ok := hashtree.LeafFromExtent(e, off, t.size)
			if !ok {
				continue // never set: the tree stays incomplete and is not kept
			}
			t.leaves[i] = h
			if !t.set[i] {
				t.set[i] = true
				t.hashed++
			}
		}
	}
}

// keptTree is the disk's kept tree if every leaf was hashed.
func (t *irTree) keptTree() (*keptTree, bool) {
	if t.hashed != len(t.leaves) {
		return nil, false
	}
	return &keptTree{tree: hashtree.FromHashes(t.size, t.leaves), mark: t.mark, valid: true}, true
}

// keepIRTrees installs the trees the initial replication hashed as the
// disks' kept trees, once it read every chunk.
func (c *vmCtl) keepIRTrees() {
	ts := c.src.ship.irTrees
	c.src.ship.irTrees = nil
	if ts == nil {
		return
	}
	in := c.src.integrity()
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, d := range c.src.disks {
		t := ts[d.Name()]
		if t == nil {
			continue
		}
		if kt, ok := t.keptTree(); ok {
			in.kept[d.Name()] = kt
		}
	}
}
