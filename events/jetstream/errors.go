package jetstream

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors of the JetStream log. Match them with errors.Is; conflicts
// and closed logs are reported with the domain's events.ErrConflict and
// events.ErrClosed.
var (
	// ErrServerConfig means a ServerConfig is incomplete or inconsistent;
	// no server was started.
	ErrServerConfig = errors.New("invalid server config")

	// ErrWeakStream means the stream exists with a configuration weaker than
	// the event log needs (see StreamConfigError for what). Open refuses to
	// use it and changes nothing: an operator must fix or move the stream.
	ErrWeakStream = errors.New("event stream configuration is weaker than required")

	// ErrBadRecord means a message stored on the event subjects is not a
	// valid event (see RecordError for which one and why).
	ErrBadRecord = errors.New("stored message is not a valid event")
)

// StreamConfigError lists every way an existing stream falls short.
type StreamConfigError struct {
	Stream   string
	Problems []string
}

func (e *StreamConfigError) Error() string {
	return fmt.Sprintf("stream %s: %s: %s", e.Stream, ErrWeakStream, strings.Join(e.Problems, "; "))
}

// Unwrap returns ErrWeakStream.
func (e *StreamConfigError) Unwrap() error { return ErrWeakStream }

// RecordError reports a stored message that does not decode into an event:
// its stream sequence, its subject and the cause (which may match
// events.ErrDecode, events.ErrUnknownType, events.ErrUnknownVersion or
// events.ErrInvalidToken).
type RecordError struct {
	Seq     uint64
	Subject string
	Err     error
}

func (e *RecordError) Error() string {
	return fmt.Sprintf("event log sequence %d on %s: %s: %v", e.Seq, e.Subject, ErrBadRecord, e.Err)
}

// Unwrap returns ErrBadRecord and the cause.
func (e *RecordError) Unwrap() []error { return []error{ErrBadRecord, e.Err} }
