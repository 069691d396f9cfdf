package batch

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"sync"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/siterecovery/siterecovery/hostsync/cycle"
)

// The delta batch wire format ("SRDB"), versions 1 (VersionBase) and 2
// (VersionRoots). All integers little endian.
//
//	offset size  field
//	0      4     magic "SRDB"
//	4      1     format version (1, or 2 when the batch carries roots)
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
//	...          version 2 only: the roots (see below)
//	end-4  4     CRC32C (Castagnoli) of every byte before it
//
// Version 2 adds, after the body, the source disks' hash tree roots at the
// cycle's close (set on the last batch of a cycle only): a count (2), then
// per disk, in name order, its name length (2) and name and the 32-byte
// root (roots.go). A batch without roots is written as version 1, byte for
// byte as before, and both versions decode; any other version is refused
// with ErrVersion.
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
}

// MsgID is the JetStream Nats-Msg-Id of a batch, so a batch sent
// twice within the duplicate window is stored once.
func MsgID(vm string, epoch, cycle uint64, index int) string {
	return fmt.Sprintf("%s.%d.%d.%d", vm, epoch, cycle, index)
}

// EncodeCycle cuts a cycle into batches of at most opts.MaxPayload bytes
// each, splitting extents too big for one batch. The last batch carries
// the end-of-cycle marker; an empty cycle is one batch with the marker.
func EncodeCycle(c cycle.Cycle, opts Options) ([][]byte, error) {
	var out [][]byte
	err := EncodeCycleEach(c, opts, func(b []byte) error {
		out = append(out, bytes.Clone(b))
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// EncodeCycleEach is EncodeCycle handing each batch, in order, to emit
// instead of returning them: the batch is valid only until emit returns
// (its buffer is reused for the next one), so a cycle is encoded without
// allocating a buffer per batch. An error of emit stops the encoding and
// is returned.
func EncodeCycleEach(c cycle.Cycle, opts Options, emit func(batch []byte) error) error {
	if err := checkBatchOptions(c.VM, c.Roots, opts); err != nil {
		return err
	}
	if err := checkRoots(c.Roots); err != nil {
		return err
	}
	avail := min(opts.MaxPayload-fixedHeaderLen-len(c.VM)-crcLen-rootsLen(c.Roots), MaxBody)
	enc := newCycleEncoder(c, opts, avail)
	enc.emit = emit
	return enc.encode()
}

func (ce *cycleEncoder) encode() error {
	for _, e := range ce.c.Extents {
		if err := ce.add(e); err != nil {
			return err
		}
	}
	return ce.flush(true)
}

func checkBatchOptions(vm string, roots map[string]string, opts Options) error {
	if _, ok := compressionCode(opts.Compression); !ok {
		return fmt.Errorf("%w: compression %q (want none, s2 or zstd)", ErrOptions, opts.Compression)
	}
	if len(vm) == 0 || len(vm) > maxNameLen {
		return fmt.Errorf("%w: vm name of %d bytes", ErrOptions, len(vm))
	}
	minimum := fixedHeaderLen + len(vm) + crcLen + extentHeaderLen + maxNameLen + 1
	if opts.MaxPayload < minimum+rootsLen(roots) {
		return fmt.Errorf("%w: max payload %d below %d", ErrOptions, opts.MaxPayload, minimum)
	}
	return nil
}

func compressionCode(name string) (byte, bool) {
	if name == "" {
		return 0, true
	}
	code, ok := compressionCodes[name]
	return code, ok
}

// cycleEncoder fills batch bodies up to avail bytes (uncompressed, so a
// batch fits whether or not compression helps). buf holds room for the
// header, then the body; left is what the cycle still has to encode, to
// size buf once.
type cycleEncoder struct {
	c      cycle.Cycle
	opts   Options
	avail  int
	prefix int
	left   int
	buf    []byte
	count  int
	// emit takes each batch; spare is the buffer handed back for the
	// next one.
	emit  func([]byte) error
	spare []byte
	index int
}

func newCycleEncoder(c cycle.Cycle, opts Options, avail int) *cycleEncoder {
	ce := &cycleEncoder{c: c, opts: opts, avail: avail, prefix: fixedHeaderLen + len(c.VM)}
	for _, e := range c.Extents {
		ce.left += extentHeaderLen + len(e.Disk) + len(e.Data)
	}
	return ce
}

func (ce *cycleEncoder) bodyLen() int { return len(ce.buf) - ce.prefix }

func (ce *cycleEncoder) appendExtent(e cycle.Extent) {
	if ce.buf == nil {
		want := ce.prefix + min(ce.avail, max(ce.left, 256)) + crcLen
		if cap(ce.spare) >= want {
			ce.buf, ce.spare = ce.spare[:ce.prefix], nil
		} else {
			ce.buf = make([]byte, ce.prefix, want)
		}
	}
	before := len(ce.buf)
	ce.buf = appendBatchExtent(ce.buf, e)
	ce.left -= len(ce.buf) - before
	ce.count++
}

func (ce *cycleEncoder) add(e cycle.Extent) error {
	if err := cycle.CheckExtent(e); err != nil {
		return err
	}
	need := extentHeaderLen + len(e.Disk)
	if e.Zero || e.Length == 0 {
		if e.Length == 0 {
			return nil
		}
		return ce.put(e, need)
	}
	for off := int64(0); off < e.Length; {
		room := ce.avail - ce.bodyLen() - need
		if ce.buf == nil {
			room = ce.avail - need
		}
		if room <= 0 {
			if err := ce.flush(false); err != nil {
				return err
			}
			continue
		}
		n := min(int64(room), e.Length-off)
		ce.appendExtent(cycle.Extent{Disk: e.Disk, Offset: e.Offset + off, Length: n, Data: e.Data[off : off+n]})
		off += n
	}
	return nil
}

func (ce *cycleEncoder) put(e cycle.Extent, need int) error {
	if ce.buf != nil && ce.bodyLen()+need > ce.avail {
		if err := ce.flush(false); err != nil {
			return err
		}
	}
	ce.appendExtent(e)
	return nil
}

func (ce *cycleEncoder) flush(last bool) error {
	b := Batch{
		VM: ce.c.VM, Epoch: ce.c.Epoch, Cycle: ce.c.Seq, Index: ce.index, Last: last,
		AppConsistent: ce.c.AppConsistent, Initial: ce.c.Initial, ClosedAt: ce.c.ClosedAt,
		Compression: ce.opts.Compression,
	}
	if last {
		b.Roots = ce.c.Roots
	}
	if ce.buf == nil {
		ce.buf = make([]byte, ce.prefix, ce.prefix+crcLen)
	}
	msg, err := sealBatch(b, ce.buf, ce.count)
	if err != nil {
		return err
	}
	if len(msg) > ce.opts.MaxPayload {
		return fmt.Errorf("%w: batch of %d bytes over %d", ErrTooLarge, len(msg), ce.opts.MaxPayload)
	}
	ce.index++
	if err := ce.emit(msg); err != nil {
		return err
	}
	ce.spare = ce.buf[:0]
	ce.buf, ce.count = nil, 0
	return nil
}

func appendBatchExtent(body []byte, e cycle.Extent) []byte {
	body = binary.LittleEndian.AppendUint16(body, uint16(len(e.Disk)))
	body = append(body, e.Disk...)
	body = binary.LittleEndian.AppendUint64(body, uint64(e.Offset))
	body = binary.LittleEndian.AppendUint64(body, uint64(e.Length))
	if e.Zero {
		return append(body, extentFlagZero)
	}
	body = append(body, 0)
	return append(body, e.Data...)
}

// Encode encodes one batch as it is (no splitting): the inverse of
// Decode.
func Encode(b Batch) ([]byte, error) {
	if len(b.VM) == 0 || len(b.VM) > maxNameLen || b.Index < 0 || b.Index > math.MaxUint32 {
		return nil, fmt.Errorf("%w: vm %q index %d", ErrOptions, b.VM, b.Index)
	}
	if err := checkRoots(b.Roots); err != nil {
		return nil, err
	}
	prefix := fixedHeaderLen + len(b.VM)
	buf := make([]byte, prefix)
	count := 0
	for _, e := range b.Extents {
		if err := cycle.CheckExtent(e); err != nil {
			return nil, err
		}
		if e.Length > 0 {
			buf = appendBatchExtent(buf, e)
			count++
		}
	}
	if len(buf)-prefix > MaxBody {
		return nil, fmt.Errorf("%w: body of %d bytes", ErrTooLarge, len(buf)-prefix)
	}
	return sealBatch(b, buf, count)
}

// sealBatch compresses the body, buf[prefix:], and frames it with header
// and CRC. buf[:prefix] is room for the header: an uncompressed body is
// framed in place, without a copy.
func sealBatch(b Batch, buf []byte, count int) ([]byte, error) {
	code, ok := compressionCode(b.Compression)
	if !ok {
		return nil, fmt.Errorf("%w: compression %q", ErrOptions, b.Compression)
	}
	prefix := fixedHeaderLen + len(b.VM)
	body := buf[prefix:]
	stored, code, err := compressBody(body, code)
	if err != nil {
		return nil, err
	}
	msg := buf
	if code != 0 {
		msg = make([]byte, prefix, prefix+len(stored)+crcLen)
		msg = append(msg, stored...)
	}
	putBatchHeader(msg[:prefix], b, code, count, len(body), len(stored))
	msg = appendRoots(msg, b.Roots)
	return binary.LittleEndian.AppendUint32(msg, crc32.Checksum(msg, crcTable)), nil
}

func putBatchHeader(h []byte, b Batch, code byte, count, rawLen, storedLen int) {
	le := binary.LittleEndian
	copy(h, magic)
	h[4], h[5], h[6], h[7] = batchVersion(b), batchFlags(b), code, 0
	le.PutUint64(h[8:], b.Epoch)
	le.PutUint64(h[16:], b.Cycle)
	le.PutUint32(h[24:], uint32(b.Index))
	le.PutUint32(h[28:], uint32(count))
	le.PutUint64(h[32:], uint64(encodeTime(b.ClosedAt)))
	le.PutUint32(h[40:], uint32(rawLen))
	le.PutUint32(h[44:], uint32(storedLen))
	le.PutUint16(h[48:], uint16(len(b.VM)))
	copy(h[fixedHeaderLen:], b.VM)
}

func batchFlags(b Batch) byte {
	var f byte
	if b.Last {
		f |= flagLast
	}
	if b.AppConsistent {
		f |= flagAppConsistent
	}
	if b.Initial {
		f |= flagInitial
	}
	return f
}

// compressBody returns the body as stored and the kind used: a body that
// does not shrink is stored as it is.
func compressBody(body []byte, code byte) ([]byte, byte, error) {
	var out []byte
	switch code {
	case 0:
		return body, 0, nil
	case 1:
		out = s2.Encode(nil, body)
	case 2:
		enc, err := zstdEncoder()
		if err != nil {
			return nil, 0, fmt.Errorf("zstd encoder: %w", err)
		}
		out = enc.EncodeAll(body, make([]byte, 0, len(body)/2+64))
	}
	if len(out) >= len(body) {
		return body, 0, nil
	}
	return out, code, nil
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
