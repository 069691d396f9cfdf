package hashtree

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
)

// SubBlockSize is the granularity below a leaf at which a resync compares
// two disks: a leaf's block is cut into LeafSize / SubBlockSize sub-blocks,
// so that scattered 4 KiB writes do not make whole 64 KiB leaves cross.
const SubBlockSize = 4 << 10

// SubHashes hashes the sub-blocks of the given leaves of a disk of size
// bytes read from r: LeafSize / SubBlockSize SHA-256 hashes per leaf, in
// order, of the bytes as they are (past the end of the disk, zeros). A
// leaf outside the disk is an error wrapping ErrInvalid.
func SubHashes(r io.ReaderAt, size int64, leaves []int) ([]byte, error) {
	out := make([]byte, 0, len(leaves)*(LeafSize/SubBlockSize)*sha256.Size)
	buf := make([]byte, LeafSize)
	for _, leaf := range leaves {
		off := int64(leaf) * LeafSize
		if leaf < 0 || off >= size {
			return nil, fmt.Errorf("%w: leaf %d of a %d-byte disk", ErrInvalid, leaf, size)
		}
		n := min(int64(LeafSize), size-off)
		clear(buf[n:])
		if _, err := r.ReadAt(buf[:n], off); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("sub-block hashes at %d: %w", off, err)
		}
		for i := 0; i < LeafSize; i += SubBlockSize {
			h := sha256.Sum256(buf[i : i+SubBlockSize])
			out = append(out, h[:]...)
		}
	}
	return out, nil
}
