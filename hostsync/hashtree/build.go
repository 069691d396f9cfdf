package hashtree

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

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
