package hostsync

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"github.com/siterecovery/siterecovery/hostsync/durable"
	"hash/crc32"
	"os"
)

// Hash tree file, version 1: magic "SRHT", version (1), leaf size (4),
// disk size (8), stamp length (2) and stamp, the leaves (32 bytes each),
// CRC32C of everything before (4). Interior nodes are recomputed on load.
const (
	hashTreeMagic   = "SRHT"
	hashTreeVersion = 1
)

// Save writes the tree to path crash-safely (temp file, fsync, rename,
// fsync of the directory). stamp is stored with it, e.g. the point the
// tree describes, so a reader can tell a stale file.
func (t *HashTree) Save(path, stamp string) error {
	buf, err := t.encode(stamp)
	if err != nil {
		return err
	}
	return durable.WriteFile(path, buf)
}

// saveCache writes the tree to path (temp file, rename) without waiting
// for the disk: for a tree that is a cache of an image, stamped with the
// image's generation. A crash leaves the old file, the new one, or a torn
// one; LoadHashTree refuses a torn file (CRC) and the stamp tells a stale
// one, and the tree is rebuilt from the image.
func (t *HashTree) saveCache(path, stamp string) error {
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

func (t *HashTree) encode(stamp string) ([]byte, error) {
	if len(stamp) > 0xffff {
		return nil, fmt.Errorf("%w: stamp of %d bytes", ErrHashTree, len(stamp))
	}
	buf := make([]byte, 0, 19+len(stamp)+len(t.levels[0])*sha256.Size+4)
	buf = append(buf, hashTreeMagic...)
	buf = append(buf, hashTreeVersion)
	buf = binary.LittleEndian.AppendUint32(buf, HashLeafSize)
	buf = binary.LittleEndian.AppendUint64(buf, uint64(t.size))
	buf = binary.LittleEndian.AppendUint16(buf, uint16(len(stamp)))
	buf = append(buf, stamp...)
	buf = append(buf, t.LeafHashes()...)
	buf = binary.LittleEndian.AppendUint32(buf, crc32.Checksum(buf, batchCRCTable))
	return buf, nil
}

// LoadHashTree reads a tree saved by Save and its stamp.
func LoadHashTree(path string) (*HashTree, string, error) {
	buf, err := os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("hash tree: %w", err)
	}
	if len(buf) < 23 || string(buf[:4]) != hashTreeMagic || buf[4] != hashTreeVersion {
		return nil, "", fmt.Errorf("%w: %s: bad header", ErrHashTree, path)
	}
	end := len(buf) - 4
	if crc32.Checksum(buf[:end], batchCRCTable) != binary.LittleEndian.Uint32(buf[end:]) {
		return nil, "", fmt.Errorf("%w: %s: CRC mismatch", ErrHashTree, path)
	}
	if binary.LittleEndian.Uint32(buf[5:]) != HashLeafSize {
		return nil, "", fmt.Errorf("%w: %s: leaf size %d", ErrHashTree, path, binary.LittleEndian.Uint32(buf[5:]))
	}
	size := int64(binary.LittleEndian.Uint64(buf[9:]))
	n := int(binary.LittleEndian.Uint16(buf[17:]))
	if 19+n > end {
		return nil, "", fmt.Errorf("%w: %s: stamp length", ErrHashTree, path)
	}
	t, err := HashTreeFromLeaves(size, buf[19+n:end])
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", path, err)
	}
	return t, string(buf[19 : 19+n]), nil
}
