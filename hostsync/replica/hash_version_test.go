package replica

import (
	"crypto/sha256"
	"encoding/binary"
	"hash/crc32"
	"os"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/hostsync/hashtree"
)

// writeV1Tree writes the tree file of disk name as a build before BLAKE3
// did: version 1, SHA-256 leaves of the image, stamped with the replica's
// generation, so only the version tells it apart.
func writeV1Tree(t *testing.T, r *Replica, name string) {
	t.Helper()
	img, err := os.ReadFile(r.ImagePath(name))
	require.NoError(t, err)
	size := int64(len(img))
	stamp := genStamp(r.state.Gen)
	le := binary.LittleEndian
	buf := append([]byte("SRHT"), 1)
	buf = le.AppendUint32(buf, hashtree.LeafSize)
	buf = le.AppendUint64(buf, uint64(size))
	buf = le.AppendUint16(buf, uint16(len(stamp)))
	buf = append(buf, stamp...)
	block := make([]byte, hashtree.LeafSize)
	for off := int64(0); off < size; off += hashtree.LeafSize {
		clear(block)
		copy(block, img[off:min(off+hashtree.LeafSize, size)])
		h := sha256.Sum256(append([]byte{0}, block...))
		buf = append(buf, h[:]...)
	}
	buf = le.AppendUint32(buf, crc32.Checksum(buf, crc32.MakeTable(crc32.Castagnoli)))
	require.NoError(t, os.WriteFile(r.treePath(name), buf, 0o644))
}

// A replica whose tree files are version 1 (SHA-256, an older build's)
// rebuilds them from the images on open, as version 2: its roots are the
// images' BLAKE3 roots, never the SHA-256 leaves read as BLAKE3 ones, and
// its new points name their hash.
func TestReplicaRebuildsVersion1TreeFiles(t *testing.T) {
	dir := t.TempDir()
	h := newReplicaHistory(5)
	r, err := OpenWithOptions(dir, "web01", replicaTestDiskSpecs(), zerolog.Nop(), Options{})
	require.NoError(t, err)
	h.applyN(t, r, 3)
	points := r.Points()
	require.Equal(t, hashtree.HashName, points[len(points)-1].RootsHash)
	want := r.Roots()
	for _, d := range replicaTestDiskSpecs() {
		writeV1Tree(t, r, d.Name)
	}
	require.NoError(t, r.Close())

	r = mustOpenReplica(t, dir, Options{})
	require.Equal(t, want, r.Roots())
	for _, d := range replicaTestDiskSpecs() {
		raw, err := os.ReadFile(r.treePath(d.Name))
		require.NoError(t, err)
		require.Equal(t, byte(2), raw[4], "disk %s: the rebuilt tree is saved as version 2", d.Name)
		_, _, err = hashtree.Load(r.treePath(d.Name))
		require.NoError(t, err)
	}
}
