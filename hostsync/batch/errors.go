package batch

import "errors"

// Errors of encoding and decoding batches. Match them with errors.Is. The
// assembler refuses batches out of sequence with hostsync/cycle's errors
// (cycle.SeqError, cycle.GapError), which the replica shares.
var (
	// ErrCorrupt means a batch does not decode: bad magic, a CRC32C
	// mismatch, a length out of bounds or a body that does not decompress
	// to its declared length. Nothing was applied.
	ErrCorrupt = errors.New("delta batch corrupt")

	// ErrVersion means a batch carries a format version this build does
	// not know (neither VersionBase nor VersionRoots).
	ErrVersion = errors.New("delta batch version unknown")

	// ErrTooLarge means a batch or its decompressed body exceeds the
	// allowed size (the server's max payload, or MaxBody).
	ErrTooLarge = errors.New("delta batch too large")

	// ErrOptions means Options are unusable (an unknown compression, or a
	// max payload too small for one header), or a batch or its roots
	// cannot be encoded.
	ErrOptions = errors.New("bad batch options")
)
