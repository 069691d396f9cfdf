package handlers

import (
	"context"
	"errors"
	"fmt"

	"github.com/siterecovery/siterecovery/events"
)

// Sentinel errors of the service. Domain errors come from events (match them
// with errors.Is on events.ErrNotFound and the others).
var (
	// ErrUnavailable means the service cannot answer now: it is closed, has
	// no read model, or the log did not answer in time.
	ErrUnavailable = errors.New("unavailable")

	// ErrUnauthorized means the caller may not run the command.
	ErrUnauthorized = errors.New("unauthorized")
)

// The error codes of a reply (docs/reference/commands.md "Error codes").
const (
	CodeInvalidArgument = "invalid_argument"
	CodeNotFound        = "not_found"
	CodeAlreadyExists   = "already_exists"
	CodeInvalidState    = "invalid_state"
	CodeConflict        = "conflict"
	CodeUnavailable     = "unavailable"
	CodeUnauthorized    = "unauthorized"
)

// codeRules maps sentinels to codes, first match wins.
var codeRules = []struct {
	err  error
	code string
}{
	{events.ErrInvalidArgument, CodeInvalidArgument},
	{events.ErrInvalidToken, CodeInvalidArgument},
	{events.ErrUnknownType, CodeInvalidArgument},
	{events.ErrUnknownVersion, CodeInvalidArgument},
	{events.ErrDecode, CodeInvalidArgument},
	{events.ErrNoEvents, CodeInvalidArgument},
	{events.ErrNotFound, CodeNotFound},
	{events.ErrAlreadyExists, CodeAlreadyExists},
	{events.ErrInvalidState, CodeInvalidState},
	{events.ErrConflict, CodeConflict},
	{ErrUnauthorized, CodeUnauthorized},
	{ErrUnavailable, CodeUnavailable},
	{events.ErrClosed, CodeUnavailable},
	{context.DeadlineExceeded, CodeUnavailable},
	{context.Canceled, CodeUnavailable},
}

// Code is the reply code of err: one of the Code constants, unavailable for
// an error of no known kind.
func Code(err error) string {
	for _, r := range codeRules {
		if errors.Is(err, r.err) {
			return r.code
		}
	}
	return CodeUnavailable
}

// The errors the components build, each wrapping the sentinel Code maps to
// its reply code; stateErr names the VM's state and allowed operations.

func invalidArg(format string, a ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, a...), events.ErrInvalidArgument)
}

func unauthorized(host, role string, vm *events.VM) error {
	return fmt.Errorf("host %s is not the %s host of vm %s: %w", host, role, vm.Name, ErrUnauthorized)
}

func mustExist(vm *events.VM, name string) error {
	if !vm.Exists() {
		return fmt.Errorf("vm %s: %w", name, events.ErrNotFound)
	}
	return nil
}

func stateErr(vm *events.VM, what string) error {
	return &events.StateError{Aggregate: events.VMAgg(vm.Name), State: string(vm.State), Operation: what, Allowed: allowedNames(vm)}
}

func allowedNames(vm *events.VM) []string {
	var out []string
	for _, op := range vm.Allowed() {
		out = append(out, string(op))
	}
	return out
}

func notFound(kind events.Kind, name string) error {
	return fmt.Errorf("%s %s: %w", kind, name, events.ErrNotFound)
}

func alreadyExists(kind events.Kind, name string) error {
	return fmt.Errorf("%s %s: %w", kind, name, events.ErrAlreadyExists)
}
