package events

import (
	"errors"
	"fmt"
)

// Sentinel errors of the domain. Match them with errors.Is.
var (
	// ErrConflict means the aggregate changed since it was loaded: the
	// expected version did not match. Nothing was appended; reload and
	// decide again.
	ErrConflict = errors.New("conflict: aggregate changed since it was loaded")

	// ErrInvalidToken means a kind, id or type is not a NATS subject token
	// ([A-Za-z0-9_-]+).
	ErrInvalidToken = errors.New("not a subject token")

	// ErrUnknownType means an event type is not in the catalog.
	ErrUnknownType = errors.New("unknown event type")

	// ErrUnknownVersion means an event's version is newer than this build
	// knows, or has no upcaster.
	ErrUnknownVersion = errors.New("unknown event version")

	// ErrDecode means an event payload does not decode.
	ErrDecode = errors.New("event does not decode")

	// ErrNoEvents means Append was called with nothing to append.
	ErrNoEvents = errors.New("no events to append")

	// ErrClosed means the log or cursor was closed.
	ErrClosed = errors.New("closed")

	// ErrNotFound means an aggregate (or a thing it names) does not exist.
	ErrNotFound = errors.New("not found")

	// ErrAlreadyExists means a create or register names something that
	// exists.
	ErrAlreadyExists = errors.New("already exists")

	// ErrInvalidArgument means a request field is missing or malformed.
	ErrInvalidArgument = errors.New("invalid argument")
)

// TokenError reports which field is not a subject token.
type TokenError struct {
	Field string
	Value string
}

func (e *TokenError) Error() string {
	return fmt.Sprintf("%s %q is not a subject token (letters, digits, '_' and '-' only)", e.Field, e.Value)
}

// Unwrap returns ErrInvalidToken.
func (e *TokenError) Unwrap() error { return ErrInvalidToken }

// StateError reports an operation that the current state does not allow.
// Its message names the current state and the allowed operations.
type StateError struct {
	Aggregate Aggregate
	State     string
	Operation string
	Allowed   []string
}

func (e *StateError) Error() string {
	return fmt.Sprintf("%s %s is %s: %s is not allowed (allowed: %s)",
		e.Aggregate.Kind, e.Aggregate.ID, e.State, e.Operation, listOrNone(e.Allowed))
}

// Unwrap returns ErrInvalidState.
func (e *StateError) Unwrap() error { return ErrInvalidState }

// ErrInvalidState means the aggregate's state does not allow an operation.
var ErrInvalidState = errors.New("invalid state")

func listOrNone(ops []string) string {
	if len(ops) == 0 {
		return "none"
	}
	s := ops[0]
	for _, o := range ops[1:] {
		s += ", " + o
	}
	return s
}
