package hostsync

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/siterecovery/siterecovery/hostsync/cycle"
	"github.com/siterecovery/siterecovery/hostsync/sparse"
	"io"
	"os"
	"runtime"
	"slices"
	"sync"
)

// HashLeafSize is the block a hash tree leaf covers.
const HashLeafSize = 64 << 10

type hashNode = [sha256.Size]byte

// HashTree is a Merkle tree over a disk's fixed blocks: leaf i is SHA-256 of
// 0x00 and block i (the last one padded with zeros), a parent is SHA-256 of
// 0x01 and its two children, and an odd last node is promoted as it is. Two
// trees of one size compare from the root down. Not safe for concurrent
// mutation; the owner serialises Update.
type HashTree struct {
	size   int64
	levels [][]hashNode // levels[0] the leaves, the last level the root
}

// BlockRange is a run of bytes of a disk.
type BlockRange struct {
	Offset int64
	Length int64
}

var zeroLeafHash = sync.OnceValue(func() hashNode {
	return leafHash(make([]byte, HashLeafSize))
})

func leafHash(block []byte) hashNode {
	h := sha256.New()
	h.Write([]byte{0})
	h.Write(block)
	var out hashNode
	h.Sum(out[:0])
	return out
}

func parentHash(l, r hashNode) hashNode {
	var buf [1 + 2*sha256.Size]byte
	buf[0] = 1
	copy(buf[1:], l[:])
	copy(buf[1+sha256.Size:], r[:])
	return sha256.Sum256(buf[:])
}

func leafCount(size int64) int {
	return int(max(1, (size+HashLeafSize-1)/HashLeafSize))
}

// BuildHashTree hashes a whole disk of size bytes. Holes of an *os.File
// are skipped (their leaves are the zero leaf), so a sparse disk builds fast.
func BuildHashTree(r io.ReaderAt, size int64) (*HashTree, error) {
	if size < 0 {
		return nil, fmt.Errorf("%w: size %d", ErrHashTree, size)
	}
	leaves := make([]hashNode, leafCount(size))
	data := dataRegions(r, size)
	buf := make([]byte, HashLeafSize)
	for i := range leaves {
		off := int64(i) * HashLeafSize
		if !overlapsAny(data, off, HashLeafSize) {
			leaves[i] = zeroLeafHash()
			continue
		}
		h, err := hashLeafAt(r, buf, off, size)
		if err != nil {
			return nil, err
		}
		leaves[i] = h
	}
	return treeFromLeaves(size, leaves), nil
}

// hashLeafAt reads and hashes the leaf at off (zero padded past size).
func hashLeafAt(r io.ReaderAt, buf []byte, off, size int64) (hashNode, error) {
	n := min(int64(len(buf)), size-off)
	clear(buf[n:])
	if _, err := r.ReadAt(buf[:n], off); err != nil && !errors.Is(err, io.EOF) {
		return hashNode{}, fmt.Errorf("hash tree: read at %d: %w", off, err)
	}
	if sparse.IsZero(buf) {
		return zeroLeafHash(), nil
	}
	return leafHash(buf), nil
}

func treeFromLeaves(size int64, leaves []hashNode) *HashTree {
	t := &HashTree{size: size, levels: [][]hashNode{leaves}}
	for level := leaves; len(level) > 1; {
		up := make([]hashNode, (len(level)+1)/2)
		for i := range up {
			up[i] = nodeOf(level, i)
		}
		t.levels = append(t.levels, up)
		level = up
	}
	return t
}

// nodeOf computes parent i from the level below.
func nodeOf(below []hashNode, i int) hashNode {
	if 2*i+1 >= len(below) {
		return below[2*i]
	}
	return parentHash(below[2*i], below[2*i+1])
}

// Size is the disk size the tree covers.
func (t *HashTree) Size() int64 { return t.size }

// Root is the hex root hash.
func (t *HashTree) Root() string {
	root := t.levels[len(t.levels)-1][0]
	return hex.EncodeToString(root[:])
}

// Update re-hashes the leaves the extents touch and their ancestors: the
// cost grows with the extents, not with the disk. A leaf that a single
// extent covers whole is hashed from that extent (its Data, or zeros); any
// other leaf is read from r, the disk after the extents were written.
// Extents past the end are clipped; the extents' Disk is not looked at.
func (t *HashTree) Update(r io.ReaderAt, extents []cycle.Extent) error {
	return t.apply(r, t.plan(extents))
}

// leafPlan is an update's work: the leaves the extents touch (sorted), the
// one extent that touches each (nil when several do), and the hashes of
// the leaves an extent covers whole, made from the extents' bytes, so
// before the image is written (known[j] is leaf dirty[j]'s when ok[j]).
type leafPlan struct {
	dirty []int
	cover map[int]*cycle.Extent
	known []hashNode
	ok    []bool
}

// plan lists the leaves of an update and hashes those the extents cover
// whole. It reads nothing of the tree but its size.
func (t *HashTree) plan(extents []cycle.Extent) *leafPlan {
	p := &leafPlan{}
	p.dirty, p.cover = t.dirtyLeaves(extents)
	p.known, p.ok = make([]hashNode, len(p.dirty)), make([]bool, len(p.dirty))
	_ = parallel(len(p.dirty), func(_, j int) error {
		off := int64(p.dirty[j]) * HashLeafSize
		p.known[j], p.ok[j] = leafFromExtent(p.cover[p.dirty[j]], off, t.size)
		return nil
	})
	return p
}

// apply hashes the plan's other leaves from r, sets the leaves and
// re-hashes their ancestors.
func (t *HashTree) apply(r io.ReaderAt, p *leafPlan) error {
	bufs := make([][]byte, runtime.GOMAXPROCS(0))
	err := parallel(len(p.dirty), func(w, j int) error {
		if !p.ok[j] {
			if bufs[w] == nil {
				bufs[w] = make([]byte, HashLeafSize)
			}
			h, err := hashLeafAt(r, bufs[w], int64(p.dirty[j])*HashLeafSize, t.size)
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

// leafFromExtent hashes the leaf at off from e when e covers all of it (up
// to the disk's end) and carries its bytes; ok is false otherwise.
func leafFromExtent(e *cycle.Extent, off, size int64) (hashNode, bool) {
	end := min(off+HashLeafSize, size)
	if e == nil || e.Offset > off || e.End() < end {
		return hashNode{}, false
	}
	if e.Zero {
		return zeroLeafHash(), true
	}
	if int64(len(e.Data)) != e.Length {
		return hashNode{}, false
	}
	block := e.Data[off-e.Offset : end-e.Offset]
	if end-off < HashLeafSize {
		padded := make([]byte, HashLeafSize)
		copy(padded, block)
		block = padded
	}
	if sparse.IsZero(block) {
		return zeroLeafHash(), true
	}
	return leafHash(block), true
}

// dirtyLeaves lists the leaves the extents touch, sorted, and for each the
// one extent that touches it (nil when several do).
func (t *HashTree) dirtyLeaves(extents []cycle.Extent) ([]int, map[int]*cycle.Extent) {
	var dirty []int
	cover := map[int]*cycle.Extent{}
	for k := range extents {
		e := &extents[k]
		end := min(e.End(), t.size)
		for off := e.Offset - e.Offset%HashLeafSize; off < end; off += HashLeafSize {
			i := int(off / HashLeafSize)
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

func parentsOf(sorted []int) []int {
	out := make([]int, 0, len(sorted))
	for _, i := range sorted {
		if n := len(out); n == 0 || out[n-1] != i/2 {
			out = append(out, i/2)
		}
	}
	return out
}

// Diff walks both trees from the root and returns the byte ranges whose
// blocks differ, in order, adjacent blocks merged. The trees must cover the
// same size.
func (t *HashTree) Diff(other *HashTree) ([]BlockRange, error) {
	if t.size != other.size {
		return nil, fmt.Errorf("%w: sizes %d and %d differ", ErrHashTree, t.size, other.size)
	}
	var out []BlockRange
	t.diffNode(other, len(t.levels)-1, 0, &out)
	return out, nil
}

func (t *HashTree) diffNode(o *HashTree, level, i int, out *[]BlockRange) {
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
	off := int64(i) * HashLeafSize
	length := min(int64(HashLeafSize), t.size-off)
	if n := len(*out); n > 0 && (*out)[n-1].Offset+(*out)[n-1].Length == off {
		(*out)[n-1].Length += length
		return
	}
	*out = append(*out, BlockRange{Offset: off, Length: length})
}

// LeafHashes exports the leaves, 32 bytes each in block order, so the other
// side can rebuild the tree with HashTreeFromLeaves and compare.
func (t *HashTree) LeafHashes() []byte {
	return t.LeafHashesRange(0, len(t.levels[0]))
}

// LeafCount is the number of leaves (blocks of HashLeafSize).
func (t *HashTree) LeafCount() int { return len(t.levels[0]) }

// LeafHashesRange exports leaves [first, first+n) (clipped to the tree), to
// send a big disk's leaves in messages of bounded size.
func (t *HashTree) LeafHashesRange(first, n int) []byte {
	first = min(max(first, 0), len(t.levels[0]))
	end := min(first+max(n, 0), len(t.levels[0]))
	out := make([]byte, 0, (end-first)*sha256.Size)
	for _, h := range t.levels[0][first:end] {
		out = append(out, h[:]...)
	}
	return out
}

// HashTreeFromLeaves rebuilds a tree of a disk of size bytes from exported
// leaf hashes.
func HashTreeFromLeaves(size int64, leaves []byte) (*HashTree, error) {
	if size < 0 || len(leaves) != leafCount(size)*sha256.Size {
		return nil, fmt.Errorf("%w: %d leaf bytes for a disk of %d bytes", ErrHashTree, len(leaves), size)
	}
	nodes := make([]hashNode, len(leaves)/sha256.Size)
	for i := range nodes {
		copy(nodes[i][:], leaves[i*sha256.Size:])
	}
	return treeFromLeaves(size, nodes), nil
}

// dataRegions lists the data (non-hole) regions of r if it is a file that
// can tell (SEEK_DATA/SEEK_HOLE), else one region covering everything.
func dataRegions(r io.ReaderAt, size int64) []BlockRange {
	f, ok := r.(*os.File)
	if !ok {
		return []BlockRange{{0, size}}
	}
	var out []BlockRange
	for _, reg := range sparse.Regions(f, 0, size) {
		if reg.Data {
			out = append(out, BlockRange{reg.Offset, reg.Length})
		}
	}
	return out
}

func overlapsAny(rs []BlockRange, off, length int64) bool {
	i, _ := slices.BinarySearchFunc(rs, off, func(r BlockRange, off int64) int {
		if r.Offset+r.Length <= off {
			return -1
		}
		return 1
	})
	return i < len(rs) && rs[i].Offset < off+length
}
