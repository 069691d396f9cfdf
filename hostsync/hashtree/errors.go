package hashtree

import (
	"errors"
	"fmt"
)

// Errors of hash trees and their files. Match them with errors.Is.
var (
	// ErrInvalid means a hash tree file is damaged (torn, a CRC mismatch,
	// a bad header), or a tree cannot be made or compared as asked
	// (different sizes, leaf hashes that do not fit the disk).
	ErrInvalid = errors.New("hash tree invalid")

	// ErrVersion means a hash tree file is of a format version this build
	// does not read (another hash): it is refused, not misread, and the
	// tree is rebuilt from the image. It wraps ErrInvalid.
	ErrVersion = fmt.Errorf("hash tree file version unknown: %w", ErrInvalid)
)
