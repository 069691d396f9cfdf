package cycle

import (
	"fmt"
	"math"
	"time"
)

// Extent is a run of bytes of one disk changed within a cycle. A zero extent
// (TRIM, WRITE_ZEROES) has Zero set, Length bytes and no Data; otherwise
// len(Data) == Length.
type Extent struct {
	Disk   string
	Offset int64
	Length int64
	Zero   bool
	Data   []byte
}

// End is the offset just past the extent.
func (e Extent) End() int64 { return e.Offset + e.Length }

// Range is a run of bytes of one disk: what an extent covers, without its
// data. A hash tree's Diff reports the blocks that differ as Ranges, and a
// resync copies them.
type Range struct {
	Offset int64
	Length int64
}

// Cycle is one closed cycle of a VM: every change to its disks between the
// previous cycle's close and this one, overwrites coalesced. Applied whole
// on top of the previous cycle's point, it gives a crash-consistent point of
// the VM's disks at ClosedAt.
//
// The pipeline: the source's change log (the .hrl) closes cycles, the
// shipper encodes a Cycle as delta batches, the recovery host decodes and
// assembles them back into a Cycle and the replica applies it whole.
type Cycle struct {
	VM    string
	Epoch uint64
	// Seq numbers the VM's cycles from 1 without gaps within an epoch.
	Seq           uint64
	ClosedAt      time.Time
	AppConsistent bool
	// Initial marks cycles of the initial replication or a resync: their
	// extents are full copies of disk ranges, not tracked writes.
	Initial bool
	Extents []Extent
	// Roots are the source disks' hash tree roots (hex) at the cycle's
	// close, carried by its last batch; nil when the source does not
	// vouch for them. The recovery host checks its replica against them
	// after applying the cycle.
	Roots map[string]string
	// RootsHash names the hash of Roots (hostsync/hashtree.HashName);
	// empty means SHA-256, a source before BLAKE3. The recovery host
	// compares only roots of its own hash (hashtree.SameHash).
	RootsHash string
}

// MaxNameLen bounds a VM's and a disk's name: the batch format carries
// them with a length of one byte's range.
const MaxNameLen = 255

// CheckExtent refuses, with an error matching ErrInvalid, an extent that is
// not well formed: a disk name empty or longer than MaxNameLen, a range
// outside int64, a zero extent that carries data, or data of another length
// than the extent's.
func CheckExtent(e Extent) error {
	switch {
	case len(e.Disk) == 0 || len(e.Disk) > MaxNameLen:
		return fmt.Errorf("%w: disk name of %d bytes", ErrInvalid, len(e.Disk))
	case e.Offset < 0 || e.Length < 0 || e.Offset > math.MaxInt64-e.Length:
		return fmt.Errorf("%w: extent %s@%d+%d out of range", ErrInvalid, e.Disk, e.Offset, e.Length)
	case e.Zero && len(e.Data) != 0:
		return fmt.Errorf("%w: zero extent %s@%d carries data", ErrInvalid, e.Disk, e.Offset)
	case !e.Zero && int64(len(e.Data)) != e.Length:
		return fmt.Errorf("%w: extent %s@%d length %d with %d data bytes", ErrInvalid, e.Disk, e.Offset, e.Length, len(e.Data))
	}
	return nil
}
