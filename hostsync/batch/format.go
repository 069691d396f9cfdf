package batch

import (
	"fmt"
	"hash/crc32"
	"math"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/siterecovery/siterecovery/hostsync/cycle"
)

// The delta batch wire format ("SRDB"), versions 1 (VersionBase), 2
// (VersionRoots) and 3 (VersionRootsHash). All integers little endian.
//
//	offset size  field
//	0      4     magic "SRDB"
//	4      1     format version (1; 2 or 3 when the batch carries roots)
//	5      1     flags: 1 last of cycle (end-of-cycle marker), 2 app-consistent, 4 initial
//	6      1     compression: 0 none, 1 S2, 2 zstd
//	7      1     reserved, 0
//	8      8     epoch
//	16     8     cycle sequence
//	24     4     batch index within the cycle, from 0
//	28     4     extent count
//	32     8     cycle closed at, Unix nanoseconds (MinInt64: zero time)
//	40     4     body length uncompressed
//	44     4     body length as stored
//	48     2     VM name length, then the VM name
//	...          body as stored
//	...          versions 2 and 3 only: the roots (see below)
//	end-4  4     CRC32C (Castagnoli) of every byte before it
//
// Version 2 adds, after the body, the source disks' hash tree roots at the
// cycle's close (set on the last batch of a cycle only): a count (2), then
// per disk, in name order, its name length (2) and name and the 32-byte
// root (roots.go), SHA-256 roots: the hash of the builds before BLAKE3.
// Version 3 is version 2 with the roots' hash named before them: its name
// length (1) and name ("blake3", hostsync/hashtree.HashName), then the
// roots section as in version 2. A batch with roots of a named hash is
// written as version 3; with roots whose hash is not named (RootsHash
// empty: SHA-256) as version 2; without roots as version 1, byte for byte
// as before. All three decode (a version 2 batch with RootsHash empty); any
// other version is refused with ErrVersion, and a build before version 3
// refuses version 3 so, never reading BLAKE3 roots as SHA-256 ones.
//
// The body (after decompression) is the extents, one after the other:
// disk name length (2) and name, offset (8), length (8), flags (1: zero),
// then length bytes of data unless the extent is a zero extent.
const (
	// VersionBase is the format version of a batch without roots.
	VersionBase = 1
	// VersionRoots is the format version of a batch that carries roots:
	// version 1 with the roots section after the body.
	VersionRoots = 2
	// VersionRootsHash is version 2 with the roots' hash named before the
	// roots section.
	VersionRootsHash = 3
	// MaxBody caps a batch's decompressed body: a batch declaring more is
	// refused before any allocation (no decompression bombs).
	MaxBody = 64 << 20

	magic = "SRDB"
	// maxRoots bounds the roots a batch carries (disks of a VM).
	maxRoots        = 1024
	fixedHeaderLen  = 50
	crcLen          = 4
	extentHeaderLen = 19
	// maxNameLen bounds VM and disk names on the wire.
	maxNameLen = cycle.MaxNameLen

	flagLast          = 1
	flagAppConsistent = 2
	flagInitial       = 4
	extentFlagZero    = 1
)

// Compression kinds of Options.Compression and Batch.Compression.
const (
	CompressionNone = "none"
	CompressionS2   = "s2"
	CompressionZstd = "zstd"
)

var compressionCodes = map[string]byte{CompressionNone: 0, CompressionS2: 1, CompressionZstd: 2}
var compressionNames = []string{CompressionNone, CompressionS2, CompressionZstd}

// crcTable is the CRC32C table of a batch's checksum.
var crcTable = crc32.MakeTable(crc32.Castagnoli)

// zstd coders are safe for concurrent EncodeAll/DecodeAll; one of each is
// made on first use and reused.
var (
	zstdEncoder = sync.OnceValues(func() (*zstd.Encoder, error) {
		return zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	})
	zstdDecoder = sync.OnceValues(func() (*zstd.Decoder, error) {
		return zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(MaxBody))
	})
)

// Options say how EncodeCycle cuts and compresses a cycle.
type Options struct {
	// MaxPayload bounds every encoded batch, header included: the NATS
	// server's max payload (e.g. 8 MiB). At most MaxBody.
	MaxPayload int
	// Compression is "none" (or empty), "s2" or "zstd". A batch that does
	// not shrink is stored uncompressed.
	Compression string
}

// Batch is one decoded delta batch: a slice of one cycle of one VM.
type Batch struct {
	VM    string
	Epoch uint64
	Cycle uint64
	// Index numbers the batches of a cycle from 0.
	Index int
	// Last is the end-of-cycle marker.
	Last          bool
	AppConsistent bool
	Initial       bool
	ClosedAt      time.Time
	// Compression is how the body was stored on the wire.
	Compression string
	Extents     []cycle.Extent
	// Roots are the source disks' hash tree roots (hex) at the cycle's
	// close, carried by the cycle's last batch (format version 2); nil
	// when the source does not vouch for them.
	Roots map[string]string
	// RootsHash names the hash of Roots (version 3: "blake3"); empty for
	// a version 2 batch, whose roots are SHA-256.
	RootsHash string
}

// MsgID is the JetStream Nats-Msg-Id of a batch, so a batch sent
// twice within the duplicate window is stored once.
func MsgID(vm string, epoch, cycle uint64, index int) string {
	return fmt.Sprintf("%s.%d.%d.%d", vm, epoch, cycle, index)
}

func compressionCode(name string) (byte, bool) {
	if name == "" {
		return 0, true
	}
	code, ok := compressionCodes[name]
	return code, ok
}

func encodeTime(t time.Time) int64 {
	if t.IsZero() {
		return math.MinInt64
	}
	return t.UnixNano()
}

func decodeTime(n int64) time.Time {
	if n == math.MinInt64 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}
