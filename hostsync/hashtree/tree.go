package hashtree

import (
	"encoding/hex"
	"fmt"
	"slices"
	"sync"

	"github.com/siterecovery/siterecovery/hostsync/cycle"
	"lukechampine.com/blake3"
	"lukechampine.com/blake3/guts"
)

const (
	// LeafSize is the block a leaf covers: 64 KiB.
	LeafSize = 64 << 10
	// HashSize is the size of a node's hash: BLAKE3 with a 32-byte output.
	HashSize = 32
	// HashName names the trees' hash wherever a root or a leaf travels (the
	// roots_hash and hash fields, the batch's hash id; docs/reference).
	// Trees of this build are BLAKE3; HashSHA256 names the hash of the
	// trees before it (tree file version 1), which a field left empty by
	// an older peer means.
	HashName   = "blake3"
	HashSHA256 = "sha256"
)

// SameHash says whether a root or leaves named with hash (as a peer sent
// it; empty means an older peer's SHA-256) can be compared with this
// build's. Roots of another hash are neither a match nor a mismatch: they
// vouch for nothing and never mean corruption.
func SameHash(hash string) bool {
	if hash == "" {
		hash = HashSHA256
	}
	return hash == HashName
}

// Hash is a node's hash: a leaf's or a parent's.
type Hash [HashSize]byte

// Tree is a Merkle tree over a disk's fixed blocks: leaf i is BLAKE3 (32
// bytes) of block i (LeafSize bytes, the last one padded with zeros), a
// parent is BLAKE3 of 0x01 and its two children (65 bytes: the inputs'
// lengths keep leaves and parents apart), and an odd last node is promoted as it is. Two
// trees of one size compare from the root down. Not safe for concurrent
// mutation; the owner serialises Update.
type Tree struct {
	size   int64
	levels [][]Hash // levels[0] the leaves, the last level the root
}

var zeroLeafHash = sync.OnceValue(func() Hash {
	return leafHash(make([]byte, LeafSize))
})

// leafHash is BLAKE3-256 of a block of LeafSize bytes, computed as BLAKE3's
// own tree over the block's 64 chunks: four runs of guts.MaxSIMD chunks
// compressed side by side (AVX-512 or AVX2 where the CPU has them), then
// their parents, on the caller's goroutine. It equals blake3.Sum256(block)
// (TestTreeHashIsBLAKE3) at about three times its speed on a 64 KiB block,
// which the hasher splits into uneven subtrees on goroutines of their own.
func leafHash(block []byte) Hash {
	const run = guts.MaxSIMD * guts.ChunkSize // LeafSize is 4 runs
	var cv [LeafSize / run][8]uint32
	for i := range cv {
		n := guts.CompressBuffer((*[run]byte)(block[i*run:]), run, &guts.IV, uint64(i*guts.MaxSIMD), 0)
		cv[i] = guts.ChainingValue(n)
	}
	left := guts.ChainingValue(guts.ParentNode(cv[0], cv[1], &guts.IV, 0))
	right := guts.ChainingValue(guts.ParentNode(cv[2], cv[3], &guts.IV, 0))
	root := guts.ParentNode(left, right, &guts.IV, 0)
	root.Flags |= guts.FlagRoot
	words := guts.WordsToBytes(guts.CompressNode(root))
	var out Hash
	copy(out[:], words[:HashSize])
	return out
}

func parentHash(l, r Hash) Hash {
	var buf [1 + 2*HashSize]byte
	buf[0] = 1
	copy(buf[1:], l[:])
	copy(buf[1+HashSize:], r[:])
	return Hash(blake3.Sum256(buf[:]))
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
