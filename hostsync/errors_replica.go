package hostsync

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
