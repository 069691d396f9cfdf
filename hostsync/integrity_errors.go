package hostsync

import "errors"

// Errors of integrity checking (integrity*.go, verify*.go).
var (
	// ErrIntegrityMismatch: after applying a cycle the replica's hash tree
	// root of a disk differs from the source's root at that cycle's close.
	ErrIntegrityMismatch = errors.New("replica differs from the source at the cycle")

	// ErrNotVerifiable: a verify cannot compare now (the source has no
	// kept tree exact at a closed cycle yet, the replica did not reach
	// that cycle in time, or this host is not the VM's source); try again.
	ErrNotVerifiable = errors.New("not verifiable now")
)
