package batch

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
)

// The roots section of a version 2 batch (see format.go): a count (2), then
// per disk, in name order, its name length (2) and name and its 32-byte
// hash tree root. Version 3 puts the roots' hash name before it: its
// length (1) and the name.

// maxHashName bounds a roots hash name.
const maxHashName = 32

// checkRoots refuses roots that cannot go on the wire: too many, a bad
// disk name, a root that is not 32 bytes of hex, a bad hash name.
func checkRoots(roots map[string]string, hash string) error {
	if len(roots) > maxRoots {
		return fmt.Errorf("%w: %d roots", ErrOptions, len(roots))
	}
	if len(hash) > maxHashName {
		return fmt.Errorf("%w: roots hash name of %d bytes", ErrOptions, len(hash))
	}
	for disk, root := range roots {
		if len(disk) == 0 || len(disk) > maxNameLen {
			return fmt.Errorf("%w: root of a disk name of %d bytes", ErrOptions, len(disk))
		}
		if b, err := hex.DecodeString(root); err != nil || len(b) != rootSize {
			return fmt.Errorf("%w: disk %s root %q is not 32 bytes in hex", ErrOptions, disk, root)
		}
	}
	return nil
}

// rootSize is the size of a root on the wire (SHA-256 or BLAKE3-256).
const rootSize = 32

// rootsLen is the size of the roots section (0 without roots).
func rootsLen(roots map[string]string, hash string) int {
	if len(roots) == 0 {
		return 0
	}
	n := 2
	if hash != "" {
		n += 1 + len(hash)
	}
	for disk := range roots {
		n += 2 + len(disk) + rootSize
	}
	return n
}

// batchVersion is the format version b is written in.
func batchVersion(b Batch) byte {
	switch {
	case len(b.Roots) > 0 && b.RootsHash != "":
		return VersionRootsHash
	case len(b.Roots) > 0:
		return VersionRoots
	}
	return VersionBase
}

// appendRoots appends the roots section (nothing without roots), after
// the hash name when there is one (version 3). The roots were checked by
// checkRoots.
func appendRoots(msg []byte, roots map[string]string, hash string) []byte {
	if len(roots) == 0 {
		return msg
	}
	if hash != "" {
		msg = append(msg, byte(len(hash)))
		msg = append(msg, hash...)
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

// decodeRootsSection parses the roots section of a batch of version v (2
// or 3), which must fill sec exactly, and the hash name of version 3.
func decodeRootsSection(v byte, sec []byte) (map[string]string, string, error) {
	hash := ""
	if v == VersionRootsHash {
		if len(sec) < 1 || int(sec[0]) == 0 || int(sec[0]) > maxHashName || len(sec) < 1+int(sec[0]) {
			return nil, "", fmt.Errorf("%w: roots hash name", ErrCorrupt)
		}
		hash, sec = string(sec[1:1+int(sec[0])]), sec[1+int(sec[0]):]
	}
	roots, err := decodeRoots(sec)
	return roots, hash, err
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
		if l == 0 || l > maxNameLen || len(sec) < 2+l+rootSize {
			return nil, fmt.Errorf("%w: root %d header", ErrCorrupt, i)
		}
		disk := string(sec[2 : 2+l])
		if _, dup := out[disk]; dup {
			return nil, fmt.Errorf("%w: disk %s has two roots", ErrCorrupt, disk)
		}
		out[disk] = hex.EncodeToString(sec[2+l : 2+l+rootSize])
		sec = sec[2+l+rootSize:]
	}
	if len(sec) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the roots", ErrCorrupt, len(sec))
	}
	return out, nil
}
