package nbd

import "errors"

// Sentinel errors of the server. Match them with errors.Is.
var (
	// ErrExportExists means AddExport names an export already served.
	ErrExportExists = errors.New("export already exists")

	// ErrExportNotFound means RemoveExport names an export not served.
	ErrExportNotFound = errors.New("export not found")

	// ErrServerClosed means the NBD server was closed.
	ErrServerClosed = errors.New("nbd server closed")
)
