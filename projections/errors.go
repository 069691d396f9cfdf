package projections

import "errors"

// Sentinel errors of the projections. Match them with errors.Is. Queries
// also return errors wrapping events.ErrInvalidArgument (an unknown query
// name, malformed params) and events.ErrNotFound (an unknown vm, plan or
// job).
var (
	// ErrClosed means the Store was closed.
	ErrClosed = errors.New("projections: store closed")

	// ErrStopped means the runner stopped on a fatal error (Store.Err
	// returns it): the read models no longer follow the log.
	ErrStopped = errors.New("projections: runner stopped")

	// ErrOutOfOrder means the log returned an event whose sequence is not
	// the checkpoint + 1: applying it would skip or repeat events, so the
	// runner stops instead.
	ErrOutOfOrder = errors.New("event out of order")

	// ErrAhead means the file's checkpoint is beyond the end of the log: the
	// file was built from another log (or a log that lost events). The
	// runner stops rather than show what the log does not hold; delete the
	// file to rebuild it from this log.
	ErrAhead = errors.New("read models are ahead of the log")

	// ErrCorrupt means a stored read model does not decode.
	ErrCorrupt = errors.New("read model does not decode")
)

// fatalError marks an error after which the runner must stop rather than
// retry: applying the same events again would fail the same way.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }

// Unwrap returns the cause.
func (e *fatalError) Unwrap() error { return e.err }
