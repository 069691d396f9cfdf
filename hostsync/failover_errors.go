package hostsync

import "errors"

// Errors of the failover side of the agent (failover*.go, promote*.go,
// fence*.go, testfailover*.go, resync*.go).
var (
	// ErrVerifyFailed: a planned failover's replica differs from the
	// source's final state (the hash tree roots disagree).
	ErrVerifyFailed = errors.New("replica differs from the source's final state")

	// ErrPeerUnavailable: the other side of a resync did not answer or has
	// no replica open yet; the resync is tried again.
	ErrPeerUnavailable = errors.New("resync peer unavailable")

	// ErrOtherHash: a peer's hash tree roots or leaves are of another hash
	// than this build's trees (a peer of another build): they are not
	// compared, never taken for a mismatch. A resync or verify that needs
	// the peer's leaves fails with it (and ErrPeerUnavailable or
	// ErrNotVerifiable) until both hosts run one hash.
	ErrOtherHash = errors.New("peer's hash trees are of another hash")

	// ErrBadRecoveryPoint: a recovery point id is not of the form
	// rp-<epoch>-<cycle>.
	ErrBadRecoveryPoint = errors.New("bad recovery point id")
)
