package httpapi

import (
	"errors"
	"fmt"
)

// Codes of errors the API itself answers.
const (
	codeMethodNotAllowed = "method_not_allowed"
	codeTooLarge         = "too_large"
)

// apiError is an error the API answers: a status and the service's JSON
// error body.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

func apiErrorf(status int, code, format string, args ...any) *apiError {
	return &apiError{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// errClientGone: a write to the client failed; it left.
var errClientGone = errors.New("client gone")
