package disk

import (
	"errors"
	"fmt"
	"syscall"
)

// Sentinel errors of tracked disks and their change logs. Match them with
// errors.Is.
var (
	// ErrNeedsResync means the disk's change log cannot be trusted (missing,
	// corrupt, overflowed, or the host restarted without a clean shutdown):
	// tracked cycles cannot be produced until the caller resynchronises the
	// replica and calls Tracked.ResetAfterResync. Reads and writes of the
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

	// ErrClosed means the disk was closed. It also matches
	// syscall.ESHUTDOWN, the error by which an NBD export tells its client
	// that the disk is going away (nbd.ExportDisk's contract).
	ErrClosed error = closedError{}

	// ErrFailed means an earlier write or fsync of the image or the log
	// failed; the disk refuses further writes (its durability is unknown).
	ErrFailed = errors.New("disk failed")
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

// logCorruptError reports a change log that does not decode at Offset. A torn
// record at the very end of the log is not an error (it is cut off); this is
// corruption anywhere else.
type logCorruptError struct {
	Offset int64
	Reason string
}

func (e *logCorruptError) Error() string {
	return fmt.Sprintf("change log corrupt at offset %d: %s", e.Offset, e.Reason)
}

// closedError is ErrClosed.
type closedError struct{}

func (closedError) Error() string { return "disk closed" }

// Is makes ErrClosed match syscall.ESHUTDOWN.
func (closedError) Is(target error) bool { return target == syscall.ESHUTDOWN }

// ImageSizeError is an image that OpenImage found with another size than
// the disk's.
type ImageSizeError struct {
	Path       string
	Size, Want int64
}

func (e *ImageSizeError) Error() string {
	return fmt.Sprintf("%s is %d bytes, disk is %d", e.Path, e.Size, e.Want)
}
