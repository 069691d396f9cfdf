package hashtree

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// The file is laid out as the format's doc comment says, and a file of
// another version (another hash) is refused, never read as version 1.
func TestFileLayoutAndUnknownVersionRefused(t *testing.T) {
	disk := bytes.Repeat([]byte{3}, 2*LeafSize+9)
	tree, err := Build(bytes.NewReader(disk), int64(len(disk)))
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "sda.hashtree")
	require.NoError(t, tree.SaveCache(path, "gen=4"))
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	le := binary.LittleEndian
	require.Equal(t, "SRHT", string(raw[:4]))
	require.Equal(t, byte(fileVersion), raw[4])
	require.Equal(t, uint32(LeafSize), le.Uint32(raw[5:]))
	require.Equal(t, uint64(len(disk)), le.Uint64(raw[9:]))
	require.Equal(t, uint16(5), le.Uint16(raw[17:]))
	require.Equal(t, "gen=4", string(raw[19:24]))
	require.Equal(t, tree.LeafHashes(), raw[24:len(raw)-4])
	require.Len(t, raw, fileHeaderLen+5+3*HashSize+fileCRCLen)

	raw[4] = fileVersion + 1
	require.NoError(t, os.WriteFile(path, raw, 0o644))
	_, _, err = Load(path)
	require.ErrorIs(t, err, ErrVersion)
	require.ErrorIs(t, err, ErrInvalid)

	require.NoError(t, os.WriteFile(path, []byte("not a tree"), 0o644))
	_, _, err = Load(path)
	require.ErrorIs(t, err, ErrInvalid)
	require.NotErrorIs(t, err, ErrVersion)
	_, _, err = Load(filepath.Join(t.TempDir(), "missing"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

// HashLeaves re-reads a range of leaves as the tree has them, holes
// included, clipped to the disk.
func TestHashLeavesEqualsTheTreesLeaves(t *testing.T) {
	const size = 20*LeafSize + 300
	f, err := os.Create(filepath.Join(t.TempDir(), "disk.img"))
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, f.Truncate(size))
	for _, off := range []int64{LeafSize + 5, 7 * LeafSize, size - 10} {
		_, err := f.WriteAt([]byte("written"), off)
		require.NoError(t, err)
	}
	tree, err := Build(f, size)
	require.NoError(t, err)
	got, err := HashLeaves(f, size, 1, 8)
	require.NoError(t, err)
	require.Equal(t, tree.LeafHashesRange(1, 7), got)
	got, err = HashLeaves(f, size, 18, 99)
	require.NoError(t, err)
	require.Equal(t, tree.LeafHashesRange(18, 99), got)
	got, err = HashLeaves(f, size, 30, 40)
	require.NoError(t, err)
	require.Empty(t, got)
}

// SubHashes are the SHA-256 of each 4 KiB sub-block of the leaves asked,
// the last leaf padded with zeros; a leaf past the disk is refused.
func TestSubHashesHashEachSubBlock(t *testing.T) {
	disk := make([]byte, 2*LeafSize+5000)
	for i := range disk {
		disk[i] = byte(i * 7)
	}
	got, err := SubHashes(bytes.NewReader(disk), int64(len(disk)), []int{2, 0})
	require.NoError(t, err)
	const per = LeafSize / SubBlockSize
	require.Len(t, got, 2*per*HashSize)
	padded := append(append([]byte(nil), disk...), make([]byte, 3*LeafSize-len(disk))...)
	for i, leaf := range []int{2, 0} {
		for s := range per {
			off := leaf*LeafSize + s*SubBlockSize
			h := sha256.Sum256(padded[off : off+SubBlockSize])
			at := (i*per + s) * HashSize
			require.Equal(t, h[:], got[at:at+HashSize], "leaf %d sub-block %d", leaf, s)
		}
	}
	_, err = SubHashes(bytes.NewReader(disk), int64(len(disk)), []int{3})
	require.ErrorIs(t, err, ErrInvalid)
}
