package batch

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"

	"github.com/klauspost/compress/s2"

	"github.com/siterecovery/siterecovery/hostsync/cycle"
)

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
	if err := checkBatchOptions(c.VM, c.Roots, c.RootsHash, opts); err != nil {
		return err
	}
	if err := checkRoots(c.Roots, c.RootsHash); err != nil {
		return err
	}
	avail := min(opts.MaxPayload-fixedHeaderLen-len(c.VM)-crcLen-rootsLen(c.Roots, c.RootsHash), MaxBody)
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

func checkBatchOptions(vm string, roots map[string]string, hash string, opts Options) error {
	if _, ok := compressionCode(opts.Compression); !ok {
		return fmt.Errorf("%w: compression %q (want none, s2 or zstd)", ErrOptions, opts.Compression)
	}
	if len(vm) == 0 || len(vm) > maxNameLen {
		return fmt.Errorf("%w: vm name of %d bytes", ErrOptions, len(vm))
	}
	minimum := fixedHeaderLen + len(vm) + crcLen + extentHeaderLen + maxNameLen + 1
	if opts.MaxPayload < minimum+rootsLen(roots, hash) {
		return fmt.Errorf("%w: max payload %d below %d", ErrOptions, opts.MaxPayload, minimum)
	}
	return nil
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
		b.Roots, b.RootsHash = ce.c.Roots, ce.c.RootsHash
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
	if err := checkRoots(b.Roots, b.RootsHash); err != nil {
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
	msg = appendRoots(msg, b.Roots, b.RootsHash)
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
