package pki

import "errors"

var (
	// ErrExists: WriteDir found a file of the directory already there and
	// InitConfig.Force is not set; nothing was written.
	ErrExists = errors.New("exists (use --force to overwrite)")
	// ErrNoControlCert: ServerAuth found no control certificate in the
	// directory, so the control plane could not connect to its own server.
	ErrNoControlCert = errors.New("no control certificate (" + RoleControl + certSuffix + "): run siterecovery auth init")
)
