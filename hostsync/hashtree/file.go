package hashtree

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"

	"github.com/siterecovery/siterecovery/hostsync/durable"
)

// The hash tree file ("SRHT"), version 2. All integers little endian.
//
//	offset size  field
//	0      4     magic "SRHT"
//	4      1     format version (2)
//	5      4     leaf size in bytes (LeafSize)
//	9      8     disk size in bytes
//	17     2     stamp length n, then the stamp (n bytes)
//	19+n   32*L  the L = LeafCount(disk size) leaf hashes, in block order
//	end-4  4     CRC32C (Castagnoli) of every byte before it
//
// The version names the hash: version 2 leaves are BLAKE3 as Tree
// describes; version 1 (the same layout) held SHA-256 leaves, of the builds
// before. Interior nodes are not stored; Load recomputes them. A file of
// another version, version 1 included, is refused with an error matching
// ErrVersion, never read as this one: its owner rebuilds the tree from the
// image (and saves it as version 2). A new hash takes a new version number.
const (
	fileMagic   = "SRHT"
	fileVersion = 2
	// fileHeaderLen is the fixed header before the stamp; fileCRCLen
	// the CRC32C at the end.
	fileHeaderLen = 19
	fileCRCLen    = 4
)

// crcTable is the CRC32C table of the tree file's checksum.
var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Save writes the tree to path crash-safely (temp file, fsync, rename,
// fsync of the directory). stamp is stored with it, e.g. the point the
// tree describes, so a reader can tell a stale file.
func (t *Tree) Save(path, stamp string) error {
	buf, err := t.encode(stamp)
	if err != nil {
		return err
	}
	return durable.WriteFile(path, buf)
}

// SaveCache writes the tree to path (temp file, rename) without waiting
// for the disk: for a tree that is a cache of an image, stamped with the
// image's generation. A crash leaves the old file, the new one, or a torn
// one; Load refuses a torn file (CRC) and the stamp tells a stale one, and
// the tree is rebuilt from the image.
func (t *Tree) SaveCache(path, stamp string) error {
	buf, err := t.encode(stamp)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, buf, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func (t *Tree) encode(stamp string) ([]byte, error) {
	if len(stamp) > 0xffff {
		return nil, fmt.Errorf("%w: stamp of %d bytes", ErrInvalid, len(stamp))
	}
	buf := make([]byte, 0, fileHeaderLen+len(stamp)+len(t.levels[0])*HashSize+fileCRCLen)
	buf = append(buf, fileMagic...)
	buf = append(buf, fileVersion)
	buf = binary.LittleEndian.AppendUint32(buf, LeafSize)
	buf = binary.LittleEndian.AppendUint64(buf, uint64(t.size))
	buf = binary.LittleEndian.AppendUint16(buf, uint16(len(stamp)))
	buf = append(buf, stamp...)
	buf = append(buf, t.LeafHashes()...)
	buf = binary.LittleEndian.AppendUint32(buf, crc32.Checksum(buf, crcTable))
	return buf, nil
}

// Load reads a tree saved by Save or SaveCache and its stamp. A file that
// is not a tree file, is torn or damaged is refused with an error matching
// ErrInvalid; a file of another format version with one matching ErrVersion
// (which matches ErrInvalid too).
func Load(path string) (*Tree, string, error) {
	buf, err := os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("hash tree: %w", err)
	}
	if len(buf) < len(fileMagic)+1 || string(buf[:4]) != fileMagic {
		return nil, "", fmt.Errorf("%w: %s: not a hash tree file", ErrInvalid, path)
	}
	if buf[4] != fileVersion {
		return nil, "", fmt.Errorf("%w: %s: version %d, this build reads %d", ErrVersion, path, buf[4], fileVersion)
	}
	if len(buf) < fileHeaderLen+fileCRCLen {
		return nil, "", fmt.Errorf("%w: %s: bad header", ErrInvalid, path)
	}
	end := len(buf) - fileCRCLen
	if crc32.Checksum(buf[:end], crcTable) != binary.LittleEndian.Uint32(buf[end:]) {
		return nil, "", fmt.Errorf("%w: %s: CRC mismatch", ErrInvalid, path)
	}
	return decodeFile(path, buf[:end])
}

// decodeFile decodes a version 2 file whose CRC was checked (buf without
// the CRC).
func decodeFile(path string, buf []byte) (*Tree, string, error) {
	if leaf := binary.LittleEndian.Uint32(buf[5:]); leaf != LeafSize {
		return nil, "", fmt.Errorf("%w: %s: leaf size %d", ErrInvalid, path, leaf)
	}
	size := int64(binary.LittleEndian.Uint64(buf[9:]))
	n := int(binary.LittleEndian.Uint16(buf[17:]))
	if fileHeaderLen+n > len(buf) {
		return nil, "", fmt.Errorf("%w: %s: stamp length", ErrInvalid, path)
	}
	t, err := FromLeaves(size, buf[fileHeaderLen+n:])
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", path, err)
	}
	return t, string(buf[fileHeaderLen : fileHeaderLen+n]), nil
}
