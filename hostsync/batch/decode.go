package batch

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/klauspost/compress/s2"

	"github.com/siterecovery/siterecovery/hostsync/cycle"
)

// Decode verifies and decodes one batch: magic, version, CRC32C and
// every length are checked, and the body is decompressed only up to its
// declared length (at most MaxBody). The extents' Data alias one
// buffer owned by the returned Batch.
func Decode(msg []byte) (Batch, error) {
	if len(msg) < fixedHeaderLen+crcLen {
		return Batch{}, fmt.Errorf("%w: %d bytes, shorter than a header", ErrCorrupt, len(msg))
	}
	if string(msg[:4]) != magic {
		return Batch{}, fmt.Errorf("%w: bad magic", ErrCorrupt)
	}
	if msg[4] != VersionBase && msg[4] != VersionRoots && msg[4] != VersionRootsHash {
		return Batch{}, fmt.Errorf("%w: version %d", ErrVersion, msg[4])
	}
	end := len(msg) - crcLen
	if crc32.Checksum(msg[:end], crcTable) != binary.LittleEndian.Uint32(msg[end:]) {
		return Batch{}, fmt.Errorf("%w: CRC32C mismatch", ErrCorrupt)
	}
	b, hdr, err := decodeHeader(msg[:end])
	if err != nil {
		return Batch{}, err
	}
	if msg[4] != VersionBase {
		if b.Roots, b.RootsHash, err = decodeRootsSection(msg[4], msg[hdr.bodyAt+hdr.stored:end]); err != nil {
			return Batch{}, err
		}
	}
	body, err := decompressBody(msg[hdr.bodyAt:hdr.bodyAt+hdr.stored], msg[6], hdr.rawLen)
	if err != nil {
		return Batch{}, err
	}
	b.Extents, err = decodeExtents(body, hdr.count)
	if err != nil {
		return Batch{}, err
	}
	return b, nil
}

type header struct {
	bodyAt int
	rawLen int
	stored int
	count  int
}

func decodeHeader(msg []byte) (Batch, header, error) {
	le := binary.LittleEndian
	flags, code := msg[5], msg[6]
	if flags&^(flagLast|flagAppConsistent|flagInitial) != 0 || code >= byte(len(compressionNames)) || msg[7] != 0 {
		return Batch{}, header{}, fmt.Errorf("%w: flags %#x compression %d", ErrCorrupt, flags, code)
	}
	b := Batch{
		Epoch: le.Uint64(msg[8:]), Cycle: le.Uint64(msg[16:]), Index: int(le.Uint32(msg[24:])),
		Last: flags&flagLast != 0, AppConsistent: flags&flagAppConsistent != 0, Initial: flags&flagInitial != 0,
		ClosedAt: decodeTime(int64(le.Uint64(msg[32:]))), Compression: compressionNames[code],
	}
	hdr := header{count: int(le.Uint32(msg[28:])), rawLen: int(le.Uint32(msg[40:]))}
	stored := int(le.Uint32(msg[44:]))
	hdr.stored = stored
	vmLen := int(le.Uint16(msg[48:]))
	hdr.bodyAt = fixedHeaderLen + vmLen
	switch {
	case vmLen == 0 || vmLen > maxNameLen || hdr.bodyAt > len(msg):
		return Batch{}, header{}, fmt.Errorf("%w: vm name length %d", ErrCorrupt, vmLen)
	case msg[4] != VersionBase && stored > len(msg)-hdr.bodyAt:
		return Batch{}, header{}, fmt.Errorf("%w: body of %d bytes declared, %d present", ErrCorrupt, stored, len(msg)-hdr.bodyAt)
	case msg[4] == VersionBase && stored != len(msg)-hdr.bodyAt:
		return Batch{}, header{}, fmt.Errorf("%w: body of %d bytes declared, %d present", ErrCorrupt, stored, len(msg)-hdr.bodyAt)
	case hdr.rawLen > MaxBody:
		return Batch{}, header{}, fmt.Errorf("%w: body of %d bytes declared", ErrTooLarge, hdr.rawLen)
	case hdr.count > hdr.rawLen/extentHeaderLen+1:
		return Batch{}, header{}, fmt.Errorf("%w: %d extents in %d bytes", ErrCorrupt, hdr.count, hdr.rawLen)
	case code == 0 && stored != hdr.rawLen:
		return Batch{}, header{}, fmt.Errorf("%w: uncompressed body %d != %d", ErrCorrupt, stored, hdr.rawLen)
	}
	b.VM = string(msg[fixedHeaderLen:hdr.bodyAt])
	return b, hdr, nil
}

// decompressBody inflates a stored body to exactly rawLen bytes, never
// allocating more than rawLen (already bounded by MaxBody).
func decompressBody(stored []byte, code byte, rawLen int) ([]byte, error) {
	switch code {
	case 0:
		return stored, nil
	case 1:
		n, err := s2.DecodedLen(stored)
		if err != nil || n != rawLen {
			return nil, fmt.Errorf("%w: s2 body declares %d bytes, header %d: %v", ErrCorrupt, n, rawLen, err)
		}
		out, err := s2.Decode(make([]byte, rawLen), stored)
		if err != nil {
			return nil, fmt.Errorf("%w: s2: %v", ErrCorrupt, err)
		}
		return out, nil
	default:
		dec, err := zstdDecoder()
		if err != nil {
			return nil, fmt.Errorf("zstd decoder: %w", err)
		}
		out, err := dec.DecodeAll(stored, make([]byte, 0, rawLen))
		if err != nil || len(out) != rawLen {
			return nil, fmt.Errorf("%w: zstd body of %d bytes, header %d: %v", ErrCorrupt, len(out), rawLen, err)
		}
		return out, nil
	}
}

func decodeExtents(body []byte, count int) ([]cycle.Extent, error) {
	out := make([]cycle.Extent, 0, min(count, 1024))
	le := binary.LittleEndian
	for i := 0; i < count; i++ {
		if len(body) < 2 {
			return nil, fmt.Errorf("%w: extent %d truncated", ErrCorrupt, i)
		}
		n := int(le.Uint16(body))
		if n == 0 || n > maxNameLen || len(body) < 2+n+17 {
			return nil, fmt.Errorf("%w: extent %d header", ErrCorrupt, i)
		}
		e := cycle.Extent{Disk: string(body[2 : 2+n])}
		body = body[2+n:]
		e.Offset, e.Length = int64(le.Uint64(body)), int64(le.Uint64(body[8:]))
		flags := body[16]
		body = body[17:]
		if flags&^extentFlagZero != 0 || e.Offset < 0 || e.Length <= 0 || e.Offset+e.Length < 0 {
			return nil, fmt.Errorf("%w: extent %d range or flags", ErrCorrupt, i)
		}
		e.Zero = flags&extentFlagZero != 0
		if !e.Zero {
			if int64(len(body)) < e.Length {
				return nil, fmt.Errorf("%w: extent %d data truncated", ErrCorrupt, i)
			}
			e.Data, body = body[:e.Length:e.Length], body[e.Length:]
		}
		out = append(out, e)
	}
	if len(body) != 0 {
		return nil, fmt.Errorf("%w: %d trailing body bytes", ErrCorrupt, len(body))
	}
	return out, nil
}
