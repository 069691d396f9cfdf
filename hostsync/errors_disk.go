package hostsync

import (
	"errors"
	"fmt"
	"syscall"
)

// Sentinel errors of the disk side (tracked disks, change logs).
// Match them with errors.Is.
var (
	// ErrNeedsResync means the disk's change log cannot be trusted (missing,
	// corrupt, overflowed, or the host restarted without a clean shutdown):
	// tracked cycles cannot be produced until the caller resynchronises the
	// replica and calls TrackedDisk.ResetAfterResync. Reads and writes of the
	// disk keep working.
	ErrNeedsResync = errors.New("change log lost: resync required")

	// ErrLogOverflow means the change log grew above its limit (half the disk
	// by default). It wraps ErrNeedsResync.
	ErrLogOverflow = fmt.Errorf("change log above its size limit: %w", ErrNeedsResync)

	// ErrOutOfRange means a request reaches past the end of the disk.
	ErrOutOfRange = errors.New("range outside the disk")

	// ErrCycleNotFound means a cycle is not closed yet, or was acknowledged
	// and dropped.
	ErrCycleNotFound = errors.New("cycle not found")

	// ErrDiskClosed means the disk was closed. It also matches
	// syscall.ESHUTDOWN, the error by which an NBD export tells its client
	// that the disk is going away (nbd.ExportDisk's contract).
	ErrDiskClosed error = diskClosedError{}

	// ErrDiskFailed means an earlier write or fsync of the image or the log
	// failed; the disk refuses further writes (its durability is unknown).
	ErrDiskFailed = errors.New("disk failed")
)

// ResyncError says why a disk needs a resync. It wraps ErrNeedsResync (or
// ErrLogOverflow, which wraps ErrNeedsResync).
type ResyncError struct {
	Disk   string
	Reason string
	Err    error
}

func (e *ResyncError) Error() string {
	return fmt.Sprintf("disk %s: %s: %v", e.Disk, e.Reason, e.Err)
}

// Unwrap returns ErrNeedsResync or ErrLogOverflow.
func (e *ResyncError) Unwrap() error { return e.Err }

// LogCorruptError reports a change log that does not decode at Offset. A torn
// record at the very end of the log is not an error (it is cut off); this is
// corruption anywhere else.
type LogCorruptError struct {
	Offset int64
	Reason string
}

func (e *LogCorruptError) Error() string {
	return fmt.Sprintf("change log corrupt at offset %d: %s", e.Offset, e.Reason)
}

// diskClosedError is ErrDiskClosed.
type diskClosedError struct{}

func (diskClosedError) Error() string { return "disk closed" }

// Is makes ErrDiskClosed match syscall.ESHUTDOWN.
func (diskClosedError) Is(target error) bool { return target == syscall.ESHUTDOWN }
