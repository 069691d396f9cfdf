package hashtree

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"sync"

	"github.com/siterecovery/siterecovery/hostsync/cycle"
	"github.com/siterecovery/siterecovery/hostsync/sparse"
)

const (
	// LeafSize is the block a leaf covers: 64 KiB.
	LeafSize = 64 << 10
	// HashSize is the size of a node's hash: SHA-256.
	HashSize = sha256.Size
)

// Hash is a node's hash: a leaf's or a parent's.
type Hash [HashSize]byte

// Tree is a Merkle tree over a disk's fixed blocks: leaf i is SHA-256 of
// 0x00 and block i (the last one padded with zeros), a parent is SHA-256 of
// 0x01 and its two children, and an odd last node is promoted as it is. Two
// trees of one size compare from the root down. Not safe for concurrent
// mutation; the owner serialises Update.
type Tree struct {
	size   int64
	levels [][]Hash // levels[0] the leaves, the last level the root
}

var zeroLeafHash = sync.OnceValue(func() Hash {
	return leafHash(make([]byte, LeafSize))
})

func leafHash(block []byte) Hash {
	h := sha256.New()
	h.Write([]byte{0})
	h.Write(block)
	var out Hash
	h.Sum(out[:0])
	return out
}

func parentHash(l, r Hash) Hash {
	var buf [1 + 2*HashSize]byte
	buf[0] = 1
	copy(buf[1:], l[:])
	copy(buf[1+HashSize:], r[:])
	return Hash(sha256.Sum256(buf[:]))
}

// LeafCount is the number of leaves of a tree of a disk of size bytes (at
// least one).
func LeafCount(size int64) int {
	return int(max(1, (size+LeafSize-1)/LeafSize))
}

// FromHashes makes the tree of a disk of size bytes from its leaves'
// hashes, which must be LeafCount(size) (as Leaves gives them). The tree
// owns leaves.
func FromHashes(size int64, leaves []Hash) *Tree {
	t := &Tree{size: size, levels: [][]Hash{leaves}}
	for level := leaves; len(level) > 1; {
		up := make([]Hash, (len(level)+1)/2)
		for i := range up {
			up[i] = nodeOf(level, i)
		}
		t.levels = append(t.levels, up)
		level = up
	}
	return t
}

// nodeOf computes parent i from the level below.
func nodeOf(below []Hash, i int) Hash {
	if 2*i+1 >= len(below) {
		return below[2*i]
	}
	return parentHash(below[2*i], below[2*i+1])
}

// Size is the disk size the tree covers.
func (t *Tree) Size() int64 { return t.size }

// Root is the hex root hash.
func (t *Tree) Root() string {
	root := t.levels[len(t.levels)-1][0]
	return hex.EncodeToString(root[:])
}

// Diff walks both trees from the root and returns the byte ranges whose
// blocks differ, in order, adjacent blocks merged. The trees must cover the
// same size.
func (t *Tree) Diff(other *Tree) ([]cycle.Range, error) {
	if t.size != other.size {
		return nil, fmt.Errorf("%w: sizes %d and %d differ", ErrInvalid, t.size, other.size)
	}
	var out []cycle.Range
	t.diffNode(other, len(t.levels)-1, 0, &out)
	return out, nil
}

func (t *Tree) diffNode(o *Tree, level, i int, out *[]cycle.Range) {
	if t.levels[level][i] == o.levels[level][i] {
		return
	}
	if level > 0 {
		below := len(t.levels[level-1])
		for c := 2 * i; c <= 2*i+1 && c < below; c++ {
			t.diffNode(o, level-1, c, out)
		}
		return
	}
	off := int64(i) * LeafSize
	length := min(int64(LeafSize), t.size-off)
	if n := len(*out); n > 0 && (*out)[n-1].Offset+(*out)[n-1].Length == off {
		(*out)[n-1].Length += length
		return
	}
	*out = append(*out, cycle.Range{Offset: off, Length: length})
}

// LeafHashes exports the leaves, HashSize bytes each in block order, so the
// other side can rebuild the tree with FromLeaves and compare.
func (t *Tree) LeafHashes() []byte {
	return t.LeafHashesRange(0, len(t.levels[0]))
}

// Leaves is a copy of the leaves' hashes, in block order.
func (t *Tree) Leaves() []Hash { return slices.Clone(t.levels[0]) }

// Leaf is the hash of leaf i.
func (t *Tree) Leaf(i int) Hash { return t.levels[0][i] }

// LeafHashesRange exports leaves [first, first+n) (clipped to the tree), to
// send a big disk's leaves in messages of bounded size.
func (t *Tree) LeafHashesRange(first, n int) []byte {
	first = min(max(first, 0), len(t.levels[0]))
	end := min(first+max(n, 0), len(t.levels[0]))
	out := make([]byte, 0, (end-first)*HashSize)
	for _, h := range t.levels[0][first:end] {
		out = append(out, h[:]...)
	}
	return out
}

// FromLeaves rebuilds the tree of a disk of size bytes from exported leaf
// hashes (LeafHashes). Leaf hashes that do not fit the disk are refused
// with an error matching ErrInvalid.
func FromLeaves(size int64, leaves []byte) (*Tree, error) {
	if size < 0 || len(leaves) != LeafCount(size)*HashSize {
		return nil, fmt.Errorf("%w: %d leaf bytes for a disk of %d bytes", ErrInvalid, len(leaves), size)
	}
	nodes := make([]Hash, len(leaves)/HashSize)
	for i := range nodes {
		copy(nodes[i][:], leaves[i*HashSize:])
	}
	return FromHashes(size, nodes), nil
}

// Build hashes a whole disk of size bytes read from r. Holes of an *os.File
// are skipped (their leaves are the zero leaf), so a sparse disk builds fast.
func Build(r io.ReaderAt, size int64) (*Tree, error) {
	if size < 0 {
		return nil, fmt.Errorf("%w: size %d", ErrInvalid, size)
	}
	leaves, err := hashLeaves(r, size, 0, LeafCount(size))
	if err != nil {
		return nil, err
	}
	return FromHashes(size, leaves), nil
}

// HashLeaves reads leaves [first, end) of a disk of size bytes from r and
// hashes them, ignoring any tree: a scrub. The hashes come as LeafHashes
// has them, HashSize bytes per leaf in block order. Holes of an *os.File
// are not read. first and end are clipped to the disk's leaves.
func HashLeaves(r io.ReaderAt, size int64, first, end int) ([]byte, error) {
	total := LeafCount(size)
	first, end = min(max(first, 0), total), min(max(end, 0), total)
	leaves, err := hashLeaves(r, size, first, max(first, end))
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(leaves)*HashSize)
	for _, h := range leaves {
		out = append(out, h[:]...)
	}
	return out, nil
}

// hashLeaves hashes leaves [first, end) of a disk of size bytes read from
// r; the leaves of holes of an *os.File are the zero leaf, unread.
func hashLeaves(r io.ReaderAt, size int64, first, end int) ([]Hash, error) {
	leaves := make([]Hash, end-first)
	data := dataRegions(r, int64(first)*LeafSize, min(int64(end)*LeafSize, size))
	buf := make([]byte, LeafSize)
	for j := range leaves {
		off := int64(first+j) * LeafSize
		if !overlapsAny(data, off, LeafSize) {
			leaves[j] = zeroLeafHash()
			continue
		}
		h, err := hashLeafAt(r, buf, off, size)
		if err != nil {
			return nil, err
		}
		leaves[j] = h
	}
	return leaves, nil
}

// hashLeafAt reads and hashes the leaf at off (zero padded past size).
func hashLeafAt(r io.ReaderAt, buf []byte, off, size int64) (Hash, error) {
	n := min(int64(len(buf)), size-off)
	clear(buf[n:])
	if _, err := r.ReadAt(buf[:n], off); err != nil && !errors.Is(err, io.EOF) {
		return Hash{}, fmt.Errorf("hash tree: read at %d: %w", off, err)
	}
	if sparse.IsZero(buf) {
		return zeroLeafHash(), nil
	}
	return leafHash(buf), nil
}

// dataRegions lists the data (non-hole) regions of [from, to) of r if it
// is a file that can tell (SEEK_DATA/SEEK_HOLE), else one region covering
// it all.
func dataRegions(r io.ReaderAt, from, to int64) []cycle.Range {
	f, ok := r.(*os.File)
	if !ok {
		return []cycle.Range{{Offset: from, Length: to - from}}
	}
	var out []cycle.Range
	for _, reg := range sparse.Regions(f, from, to) {
		if reg.Data {
			out = append(out, cycle.Range{Offset: reg.Offset, Length: reg.Length})
		}
	}
	return out
}

// overlapsAny says whether [off, off+length) overlaps one of the sorted,
// disjoint ranges rs.
func overlapsAny(rs []cycle.Range, off, length int64) bool {
	i, _ := slices.BinarySearchFunc(rs, off, func(r cycle.Range, off int64) int {
		if r.Offset+r.Length <= off {
			return -1
		}
		return 1
	})
	return i < len(rs) && rs[i].Offset < off+length
}

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
			h, err := hashLeafAt(r, bufs[w], int64(p.dirty[j])*LeafSize, t.size)
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
