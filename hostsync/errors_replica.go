package hostsync

import (
	"errors"
	"fmt"
)

// Sentinel errors of delta batches, the replica, its recovery points and
// hash trees. Match them with errors.Is.
var (
	// ErrBatchCorrupt means a batch does not decode: bad magic, a CRC32C
	// mismatch, a length out of bounds or a body that does not decompress
	// to its declared length. Nothing was applied.
	ErrBatchCorrupt = errors.New("delta batch corrupt")

	// ErrBatchVersion means a batch carries a format version this build
	// does not know.
	ErrBatchVersion = errors.New("delta batch version unknown")

	// ErrBatchTooLarge means a batch or its decompressed body exceeds the
	// allowed size (the server's max payload, or the decompression cap).
	ErrBatchTooLarge = errors.New("delta batch too large")

	// ErrBatchOptions means BatchOptions are unusable (an unknown
	// compression, or a max payload too small for one header).
	ErrBatchOptions = errors.New("bad batch options")

	// ErrBatchGap means a batch arrived after a missing batch of its
	// cycle. Nothing was applied; the missing batches must be sent again.
	ErrBatchGap = errors.New("gap in the batches of a cycle")

	// ErrStaleEpoch means a cycle or batch belongs to an epoch other than
	// the one expected (an older one is fenced off for good).
	ErrStaleEpoch = errors.New("epoch not expected")

	// ErrCycleGap means a cycle's sequence is ahead of the next expected
	// one: a cycle is missing. Nothing was applied.
	ErrCycleGap = errors.New("cycle sequence gap")

	// ErrCycleApplied means a cycle (or a batch of it) was applied
	// already: a redelivery, safe to acknowledge and drop.
	ErrCycleApplied = errors.New("cycle already applied")

	// ErrBadCycle means a cycle names an unknown disk, an extent out of
	// the disk's bounds, or data that does not match its length.
	ErrBadCycle = errors.New("bad cycle")

	// ErrNoSpace means the replica's file system is full. The apply failed
	// as a whole: the replica stays at its previous point and a later
	// retry can succeed.
	ErrNoSpace = errors.New("no space left for the replica")

	// ErrPointNotFound means no retained recovery point has that id.
	ErrPointNotFound = errors.New("recovery point not found")

	// ErrReplicaClosed means the replica was closed.
	ErrReplicaClosed = errors.New("replica closed")

	// ErrReplicaState means the replica's directory does not match the
	// VM or disks it was opened for, or its state file is damaged.
	ErrReplicaState = errors.New("replica state invalid")
)

// SeqError reports a cycle (or batch) refused for its epoch or sequence.
// It unwraps to ErrStaleEpoch, ErrCycleGap or ErrCycleApplied.
type SeqError struct {
	VM                  string
	WantEpoch, GotEpoch uint64
	WantSeq, GotSeq     uint64
	Err                 error
}

func (e *SeqError) Error() string {
	return fmt.Sprintf("vm %s: cycle %d/%d refused, expected %d/%d: %v",
		e.VM, e.GotEpoch, e.GotSeq, e.WantEpoch, e.WantSeq, e.Err)
}

func (e *SeqError) Unwrap() error { return e.Err }

// GapError reports a batch that arrived while an earlier batch of its
// cycle is missing. It unwraps to ErrBatchGap.
type GapError struct {
	VM        string
	Cycle     uint64
	WantIndex int
	GotIndex  int
}

func (e *GapError) Error() string {
	return fmt.Sprintf("vm %s cycle %d: batch %d arrived, expected %d", e.VM, e.Cycle, e.GotIndex, e.WantIndex)
}

func (e *GapError) Unwrap() error { return ErrBatchGap }

// StageError reports the apply stage at which an apply (or revert)
// failed. It unwraps to the cause.
type StageError struct {
	Stage string
	Err   error
}

func (e *StageError) Error() string { return fmt.Sprintf("replica %s: %v", e.Stage, e.Err) }

func (e *StageError) Unwrap() error { return e.Err }
