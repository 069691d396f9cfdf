package batch

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
)

// The roots section of a version 2 batch (see format.go): a count (2), then
// per disk, in name order, its name length (2) and name and its 32-byte
// hash tree root.

// checkRoots refuses roots that cannot go on the wire: too many, a bad
// disk name, a root that is not 32 bytes of hex.
func checkRoots(roots map[string]string) error {
	if len(roots) > maxRoots {
		return fmt.Errorf("%w: %d roots", ErrOptions, len(roots))
	}
	for disk, root := range roots {
		if len(disk) == 0 || len(disk) > maxNameLen {
			return fmt.Errorf("%w: root of a disk name of %d bytes", ErrOptions, len(disk))
		}
		if b, err := hex.DecodeString(root); err != nil || len(b) != sha256.Size {
			return fmt.Errorf("%w: disk %s root %q is not a SHA-256 in hex", ErrOptions, disk, root)
		}
	}
	return nil
}

// rootsLen is the size of the roots section (0 without roots).
func rootsLen(roots map[string]string) int {
	if len(roots) == 0 {
		return 0
	}
	n := 2
	for disk := range roots {
		n += 2 + len(disk) + sha256.Size
	}
	return n
}

// batchVersion is the format version b is written in.
func batchVersion(b Batch) byte {
	if len(b.Roots) > 0 {
		return VersionRoots
	}
	return VersionBase
}

// appendRoots appends the roots section (nothing without roots). The roots
// were checked by checkRoots.
func appendRoots(msg []byte, roots map[string]string) []byte {
	if len(roots) == 0 {
		return msg
	}
	le := binary.LittleEndian
	msg = le.AppendUint16(msg, uint16(len(roots)))
	disks := make([]string, 0, len(roots))
	for d := range roots {
		disks = append(disks, d)
	}
	slices.Sort(disks)
	for _, d := range disks {
		msg = le.AppendUint16(msg, uint16(len(d)))
		msg = append(msg, d...)
		raw, _ := hex.DecodeString(roots[d])
		msg = append(msg, raw...)
	}
	return msg
}

// decodeRoots parses a roots section, which must fill sec exactly.
func decodeRoots(sec []byte) (map[string]string, error) {
	le := binary.LittleEndian
	if len(sec) < 2 {
		return nil, fmt.Errorf("%w: roots section of %d bytes", ErrCorrupt, len(sec))
	}
	n := int(le.Uint16(sec))
	sec = sec[2:]
	if n == 0 || n > maxRoots {
		return nil, fmt.Errorf("%w: %d roots", ErrCorrupt, n)
	}
	out := make(map[string]string, n)
	for i := 0; i < n; i++ {
		if len(sec) < 2 {
			return nil, fmt.Errorf("%w: root %d truncated", ErrCorrupt, i)
		}
		l := int(le.Uint16(sec))
		if l == 0 || l > maxNameLen || len(sec) < 2+l+sha256.Size {
			return nil, fmt.Errorf("%w: root %d header", ErrCorrupt, i)
		}
		disk := string(sec[2 : 2+l])
		if _, dup := out[disk]; dup {
			return nil, fmt.Errorf("%w: disk %s has two roots", ErrCorrupt, disk)
		}
		out[disk] = hex.EncodeToString(sec[2+l : 2+l+sha256.Size])
		sec = sec[2+l+sha256.Size:]
	}
	if len(sec) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the roots", ErrCorrupt, len(sec))
	}
	return out, nil
}
