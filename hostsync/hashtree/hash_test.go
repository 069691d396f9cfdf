package hashtree

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"lukechampine.com/blake3"
)

// sha256Hasher is the leaf hash of tree file version 1 (SHA-256 of 0x00
// and the block): the benchmark's baseline and the v1 file's leaves.
func sha256Hasher() leafHasher {
	leaf := func(block []byte) Hash {
		h := sha256.New()
		h.Write([]byte{0})
		h.Write(block)
		var out Hash
		h.Sum(out[:0])
		return out
	}
	return leafHasher{leaf: leaf, zero: leaf(make([]byte, LeafSize))}
}

// A leaf is BLAKE3 (32 bytes) of the block, a parent BLAKE3 of 0x01 and
// its children, as Tree says.
func TestTreeHashIsBLAKE3(t *testing.T) {
	disk := bytes.Repeat([]byte{7}, 2*LeafSize)
	tree, err := Build(bytes.NewReader(disk), int64(len(disk)))
	require.NoError(t, err)
	random := make([]byte, LeafSize)
	_, _ = rand.Read(random)
	require.Equal(t, Hash(blake3.Sum256(random)), leafHash(random))
	leaf := blake3.Sum256(disk[:LeafSize])
	require.Equal(t, string(leaf[:]), string(tree.LeafHashes()[:HashSize]))
	root := blake3.Sum256(append(append([]byte{1}, leaf[:]...), leaf[:]...))
	require.Equal(t, hex.EncodeToString(root[:]), tree.Root())
	require.True(t, SameHash(HashName))
	require.False(t, SameHash(""), "a peer that names no hash is an older build's SHA-256")
	require.False(t, SameHash(HashSHA256))
}

// Hashing on many workers gives the one worker's leaves, whatever the
// split, holes, zero blocks and a short last leaf included.
func TestParallelHashLeavesEqualsSerial(t *testing.T) {
	const size = 1000*LeafSize + 123
	f, err := os.Create(filepath.Join(t.TempDir(), "disk.img"))
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, f.Truncate(size))
	block := make([]byte, 3*LeafSize)
	for _, off := range []int64{0, 5*LeafSize + 1, 300 * LeafSize, 640*LeafSize - 7, size - 100} {
		_, _ = rand.Read(block)
		_, err := f.WriteAt(block[:min(int64(len(block)), size-off)], off)
		require.NoError(t, err)
	}
	serial, err := hashLeavesWith(f, size, 0, LeafCount(size), 1, treeHasher())
	require.NoError(t, err)
	for _, workers := range []int{2, 3, 7, 16, 1000} {
		got, err := hashLeavesWith(f, size, 0, LeafCount(size), workers, treeHasher())
		require.NoError(t, err)
		require.Equal(t, serial, got, "%d workers", workers)
		got, err = hashLeavesWith(f, size, 17, 901, workers, treeHasher())
		require.NoError(t, err)
		require.Equal(t, serial[17:901], got, "%d workers, a range", workers)
	}
	tree, err := Build(f, size)
	require.NoError(t, err)
	require.Equal(t, FromHashes(size, serial).Root(), tree.Root())
}

// A version 1 file (SHA-256 leaves, the builds before) is refused with
// ErrVersion, never read as BLAKE3 leaves: its owner rebuilds the tree.
func TestVersion1FileIsRefusedNotMisread(t *testing.T) {
	disk := bytes.Repeat([]byte{9}, 3*LeafSize)
	leaves, err := hashLeavesWith(bytes.NewReader(disk), int64(len(disk)), 0, 3, 1, sha256Hasher())
	require.NoError(t, err)
	le := binary.LittleEndian
	buf := append([]byte("SRHT"), 1)
	buf = le.AppendUint32(buf, LeafSize)
	buf = le.AppendUint64(buf, uint64(len(disk)))
	buf = le.AppendUint16(buf, 5)
	buf = append(buf, "gen=1"...)
	for _, h := range leaves {
		buf = append(buf, h[:]...)
	}
	buf = le.AppendUint32(buf, crc32.Checksum(buf, crcTable))
	path := filepath.Join(t.TempDir(), "sda.hashtree")
	require.NoError(t, os.WriteFile(path, buf, 0o644))
	_, _, err = Load(path)
	require.ErrorIs(t, err, ErrVersion)
	require.ErrorContains(t, err, "version 1, this build reads 2")

	// Rebuilt from the image and saved, it is a version 2 file that loads.
	tree, err := Build(bytes.NewReader(disk), int64(len(disk)))
	require.NoError(t, err)
	require.NoError(t, tree.Save(path, "gen=1"))
	loaded, stamp, err := Load(path)
	require.NoError(t, err)
	require.Equal(t, "gen=1", stamp)
	require.Equal(t, tree.Root(), loaded.Root())
	require.NotEqual(t, FromHashes(int64(len(disk)), leaves).Root(), loaded.Root())
}

// BenchmarkHashLeaves hashes a 256 MiB image of random data (SR_BENCH_HASH_MIB
// to change it), from the page cache, with SHA-256 (tree file version 1, the
// baseline) and BLAKE3 (version 2), on one worker and on every CPU; each
// sub-benchmark reports MB/s, and the BLAKE3 ones the ratio to SHA-256 on
// the same workers, measured in the same run just before.
func BenchmarkHashLeaves(b *testing.B) {
	size := int64(256 << 20)
	if v := os.Getenv("SR_BENCH_HASH_MIB"); v != "" {
		var mib int64
		_, _ = fmt.Sscan(v, &mib)
		size = mib << 20
	}
	path := filepath.Join(b.TempDir(), "disk.img")
	data := make([]byte, size)
	_, _ = rand.Read(data)
	require.NoError(b, os.WriteFile(path, data, 0o644))
	data = nil
	f, err := os.Open(path)
	require.NoError(b, err)
	defer f.Close()
	cpus := runtime.GOMAXPROCS(0)
	for _, workers := range []int{1, cpus} {
		var shaMBps float64
		for _, hc := range []struct {
			name string
			h    leafHasher
		}{{"sha256", sha256Hasher()}, {"blake3", treeHasher()}} {
			b.Run(benchName(hc.name, workers, cpus), func(b *testing.B) {
				b.SetBytes(size)
				start := time.Now()
				for b.Loop() {
					_, err := hashLeavesWith(f, size, 0, LeafCount(size), workers, hc.h)
					require.NoError(b, err)
				}
				mbps := float64(size) * float64(b.N) / time.Since(start).Seconds() / 1e6
				b.ReportMetric(mbps, "MB/s")
				if hc.name == "sha256" {
					shaMBps = mbps
				} else if shaMBps > 0 {
					b.ReportMetric(mbps/shaMBps, "x_sha256")
				}
			})
		}
	}
}

func benchName(hash string, workers, cpus int) string {
	if workers == 1 {
		return hash + "/serial"
	}
	return hash + "/cpus=" + strconv.Itoa(cpus)
}
