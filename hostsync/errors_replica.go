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

// StageError reports the apply stage at which an apply (or revert)
// failed. It unwraps to the cause.
type StageError struct {
	Stage string
	Err   error
}

func (e *StageError) Error() string { return fmt.Sprintf("replica %s: %v", e.Stage, e.Err) }

func (e *StageError) Unwrap() error { return e.Err }
