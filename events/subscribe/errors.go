package subscribe

import (
	"errors"
	"fmt"
)

// Sentinel errors of the package.
var (
	// ErrClosed is returned by Next after Close.
	ErrClosed = errors.New("subscription closed")

	// ErrBadRecord matches a *RecordError.
	ErrBadRecord = errors.New("stored message is not a valid event")
)

// RecordError is a stored message that is not a valid event: a subject that
// is not sr.evt.<kind>.<id>.<type>, a payload that does not decode, or a
// payload whose type differs from its subject's.
type RecordError struct {
	Seq     uint64
	Subject string
	Err     error
}

func (e *RecordError) Error() string {
	return fmt.Sprintf("event %d (%s): %v", e.Seq, e.Subject, e.Err)
}

// Unwrap matches ErrBadRecord and the cause (events.ErrDecode, ...).
func (e *RecordError) Unwrap() []error { return []error{ErrBadRecord, e.Err} }
