package hashtree

import (
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
// r on every CPU; the leaves of holes of an *os.File are the zero leaf,
// unread.
func hashLeaves(r io.ReaderAt, size int64, first, end int) ([]Hash, error) {
	return hashLeavesWith(r, size, first, end, runtime.GOMAXPROCS(0), treeHasher())
}

// leafHasher hashes a leaf's block (leaf) and knows the hash of a zero
// block (zero), which holes and zero blocks take unhashed.
type leafHasher struct {
	leaf func(block []byte) Hash
	zero Hash
}

// treeHasher is the trees' leaf hash (BLAKE3).
func treeHasher() leafHasher { return leafHasher{leaf: leafHash, zero: zeroLeafHash()} }

// minLeavesPerWorker keeps a small range on one goroutine: 64 leaves are
// 4 MiB, well above what a goroutine costs.
const minLeavesPerWorker = 64

// hashLeavesWith hashes leaves [first, end) with up to workers goroutines,
// each over one contiguous range of leaves with its own buffer, hashing a
// block with hash. Each leaf's hash lands at its own index, so the result
// is the one worker's whatever the split; the first error (in leaf order)
// is returned.
func hashLeavesWith(r io.ReaderAt, size int64, first, end, workers int, hash leafHasher) ([]Hash, error) {
	leaves := make([]Hash, end-first)
	// The holes are asked once, before the workers: finding them moves an
	// *os.File's offset, which ReadAt does not use.
	data := dataRegions(r, int64(first)*LeafSize, min(int64(end)*LeafSize, size))
	workers = max(1, min(workers, len(leaves)/minLeavesPerWorker))
	per := (len(leaves) + workers - 1) / max(1, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := min(w*per, len(leaves)), min((w+1)*per, len(leaves))
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[w] = hashRange(r, size, first, leaves[lo:hi], lo, data, hash)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return leaves, nil
}

// hashRange fills out, the leaves from first+at on, with their hashes.
func hashRange(r io.ReaderAt, size int64, first int, out []Hash, at int, data []cycle.Range, hash leafHasher) error {
	buf := make([]byte, LeafSize)
	for j := range out {
		off := int64(first+at+j) * LeafSize
		if !overlapsAny(data, off, LeafSize) {
			out[j] = hash.zero
			continue
		}
		h, err := hashLeafAt(r, buf, off, size, hash)
		if err != nil {
			return err
		}
		out[j] = h
	}
	return nil
}

// hashLeafAt reads and hashes the leaf at off (zero padded past size).
func hashLeafAt(r io.ReaderAt, buf []byte, off, size int64, hash leafHasher) (Hash, error) {
	n := min(int64(len(buf)), size-off)
	clear(buf[n:])
	if _, err := r.ReadAt(buf[:n], off); err != nil && !errors.Is(err, io.EOF) {
		return Hash{}, fmt.Errorf("hash tree: read at %d: %w", off, err)
	}
	if sparse.IsZero(buf) {
		return hash.zero, nil
	}
	return hash.leaf(buf), nil
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

// BuildFile hashes the whole disk of size bytes in the image at path,
// read through a descriptor of its own (Build moves an *os.File's offset
// to find its holes, so it must not share one with other readers).
func BuildFile(path string, size int64) (*Tree, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Build(f, size)
}
