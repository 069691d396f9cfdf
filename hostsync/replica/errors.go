package replica

import (
	"errors"
	"fmt"
)

// Sentinel errors of the replica and its recovery points. Match them with
// errors.Is. The errors of a cycle refused for its sequence or shape are
// hostsync/cycle's, those of batches hostsync/batch's, those of hash trees
// hostsync/hashtree's.
var (
	// ErrNoSpace means the replica's file system is full. The apply failed
	// as a whole: the replica stays at its previous point and a later
	// retry can succeed.
	ErrNoSpace = errors.New("no space left for the replica")

	// ErrPointNotFound means no retained recovery point has that id.
	ErrPointNotFound = errors.New("recovery point not found")

	// ErrClosed means the replica was closed.
	ErrClosed = errors.New("replica closed")

	// ErrState means the replica's directory does not match the VM or
	// disks it was opened for, one of its files (the state, the pending
	// record, an undo file) is damaged, or the replica is not in a state
	// that allows the operation (a revert past a point a test copy uses, a
	// preimage without a durable point, a rehash while an interrupted
	// operation is recovered).
	ErrState = errors.New("replica state invalid")

	// ErrVersion means a file of the replica (the state file, the pending
	// record, an undo file) is of a format version this build does not
	// read: it is refused, never misread, and the replica does not open.
	// It wraps ErrState.
	ErrVersion = fmt.Errorf("replica file version unknown: %w", ErrState)
)

// StageError reports the stage (one of the Stage constants) at which an
// apply, a revert or a prune failed. It unwraps to the cause.
type StageError struct {
	Stage string
	Err   error
}

func (e *StageError) Error() string { return fmt.Sprintf("replica %s: %v", e.Stage, e.Err) }

// Unwrap returns the cause.
func (e *StageError) Unwrap() error { return e.Err }
