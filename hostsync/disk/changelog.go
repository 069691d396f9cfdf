package disk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"time"
)

// The change log (<image>.hrl) format, version 1 (hrlVersion). All integers
// little endian.
//
//	file header (64 bytes):
//	  0  magic "SRHRL\x00\x00" (7 bytes)
//	  7  u8 format version: 1
//	  8  u64 disk size in bytes
//	 16  u64 base seq: the number of the first cycle this file holds
//	 24  36 reserved zero bytes
//	 60  u32 CRC32C of bytes 0..60
//	record (32-byte header, then DataLen bytes):
//	  0  u16 magic 0x5248 ("HR")
//	  2  u8 kind, u8 flags
//	  4  u32 DataLen
//	  8  u64 A: disk offset (write, zero) or cycle seq (close)
//	 16  u64 B: length (write, zero) or unix nanoseconds (close, open)
//	 24  u32 CRC32C of header bytes 0..24
//	 28  u32 CRC32C of the data
//
// The header has its own checksum so that a length can be trusted: a record
// whose header is sound but which ends past the end of the file is a torn
// tail; a damaged header or data followed by more records is corruption.
//
// Records are appended in the order the writes reach the image; a write's
// record is written before the image is touched.
//
// A log of another version (or without the magic) is never read: it does
// not decode (a *logCorruptError naming the version), so the disk opens in
// the NeedsResync state. A change to the layout above is a new version.
const (
	// hrlVersion is the format version this package writes and reads.
	hrlVersion       = 1
	hrlHeaderSize    = 64
	hrlRecHeaderSize = 32
	hrlRecMagic      = 0x5248
	// hrlMaxRecordData bounds one record's data; larger writes are split.
	hrlMaxRecordData = 32 << 20
)

var hrlMagic = [7]byte{'S', 'R', 'H', 'R', 'L', 0, 0}

var hrlCRC = crc32.MakeTable(crc32.Castagnoli)

// Record kinds.
const (
	hrlWrite  uint8 = 1 // data written at A, B bytes
	hrlZero   uint8 = 2 // B bytes at A read as zero (hrlFlagTrim: hole punched)
	hrlClose  uint8 = 3 // cycle A closed at time B (hrlFlagAppConsistent)
	hrlOpen   uint8 = 4 // disk opened; data is the boot id; redo starts here
	hrlClean  uint8 = 5 // clean shutdown: the image holds every record before
	hrlResync uint8 = 6 // log unusable from here; data is the reason
)

const (
	hrlFlagTrim          uint8 = 1
	hrlFlagAppConsistent uint8 = 1
)

// hrlRec is one decoded record header with where its data sits in the file.
type hrlRec struct {
	kind   uint8
	flags  uint8
	a, b   uint64
	dataAt int64 // file offset of the data
	at     int64 // file offset of the record header
	size   int64 // header + data
}

// off and length give the disk range of a write or zero record.
func (r hrlRec) off() int64    { return int64(r.a) }
func (r hrlRec) length() int64 { return int64(r.b) }

type hrlHeader struct {
	diskSize int64
	baseSeq  uint64
}

func encodeHRLHeader(h hrlHeader) []byte {
	b := make([]byte, hrlHeaderSize)
	copy(b, hrlMagic[:])
	b[7] = hrlVersion
	binary.LittleEndian.PutUint64(b[8:], uint64(h.diskSize))
	binary.LittleEndian.PutUint64(b[16:], h.baseSeq)
	binary.LittleEndian.PutUint32(b[60:], crc32.Checksum(b[:60], hrlCRC))
	return b
}

func decodeHRLHeader(b []byte) (hrlHeader, error) {
	if len(b) < hrlHeaderSize {
		return hrlHeader{}, &logCorruptError{Offset: 0, Reason: "short header"}
	}
	if !bytes.Equal(b[:7], hrlMagic[:]) {
		return hrlHeader{}, &logCorruptError{Offset: 0, Reason: "bad magic: not a change log"}
	}
	if b[7] != hrlVersion {
		return hrlHeader{}, &logCorruptError{Offset: 0, Reason: fmt.Sprintf("unknown format version %d (this build reads version %d)", b[7], hrlVersion)}
	}
	if crc32.Checksum(b[:60], hrlCRC) != binary.LittleEndian.Uint32(b[60:]) {
		return hrlHeader{}, &logCorruptError{Offset: 0, Reason: "header checksum mismatch"}
	}
	h := hrlHeader{
		diskSize: int64(binary.LittleEndian.Uint64(b[8:])),
		baseSeq:  binary.LittleEndian.Uint64(b[16:]),
	}
	if h.diskSize <= 0 || h.baseSeq == 0 {
		return hrlHeader{}, &logCorruptError{Offset: 0, Reason: "header disk size or base seq invalid"}
	}
	return h, nil
}

// encodeHRLRecHeader fills a 32-byte record header for data; the CRC covers
// data too.
func encodeHRLRecHeader(hdr []byte, kind, flags uint8, a, b uint64, data []byte) {
	binary.LittleEndian.PutUint16(hdr[0:], hrlRecMagic)
	hdr[2], hdr[3] = kind, flags
	binary.LittleEndian.PutUint32(hdr[4:], uint32(len(data)))
	binary.LittleEndian.PutUint64(hdr[8:], a)
	binary.LittleEndian.PutUint64(hdr[16:], b)
	binary.LittleEndian.PutUint32(hdr[24:], crc32.Checksum(hdr[:24], hrlCRC))
	binary.LittleEndian.PutUint32(hdr[28:], crc32.Checksum(data, hrlCRC))
}

// hrlScan is what a full read of a change log finds.
type hrlScan struct {
	header hrlHeader
	// closed holds the closed cycles in order, open the records of the
	// cycle still open at the end of the log.
	closed []hrlCycle
	open   []hrlRec
	// redo holds the write and zero records after the last open record:
	// the writes the image may miss after a process crash.
	redo         []hrlRec
	lastOpenBoot string
	clean        bool   // the last record is a clean-shutdown marker
	resync       string // non-empty: a resync marker with this reason
	validEnd     int64  // end of the last whole record
	torn         bool   // bytes after validEnd were cut off as a torn tail
}

// hrlCycle locates one closed cycle in the log.
type hrlCycle struct {
	seq           uint64
	closedAt      time.Time
	appConsistent bool
	recs          []hrlRec // write and zero records, in log order
	end           int64    // file offset just past its close record
}

// scanHRL reads a whole change log of fileSize bytes. It returns an error
// (a *logCorruptError) for anything but a torn tail, which it reports in
// hrlScan.torn.
func scanHRL(r io.ReaderAt, fileSize int64) (*hrlScan, error) {
	hb := make([]byte, hrlHeaderSize)
	if _, err := r.ReadAt(hb, 0); err != nil {
		return nil, &logCorruptError{Offset: 0, Reason: fmt.Sprintf("read header: %v", err)}
	}
	h, err := decodeHRLHeader(hb)
	if err != nil {
		return nil, err
	}
	s := &hrlScan{header: h, validEnd: hrlHeaderSize}
	next := h.baseSeq
	at := int64(hrlHeaderSize)
	for at < fileSize && s.resync == "" {
		rec, data, err := readHRLRecord(r, at, fileSize)
		if errors.Is(err, errHRLTornTail) {
			s.torn = true
			break
		}
		if err != nil {
			return nil, err
		}
		if err := s.add(rec, data, &next); err != nil {
			return nil, err
		}
		at += rec.size
		s.validEnd = at
	}
	return s, nil
}

var errHRLTornTail = errors.New("torn tail")

// readHRLRecord decodes the record at offset at. A record cut short by the
// end of the file, a bad last record, or a bad record followed only by zero
// bytes is a torn tail; a bad record followed by more data is corruption.
func readHRLRecord(r io.ReaderAt, at, fileSize int64) (hrlRec, []byte, error) {
	rest := fileSize - at
	if rest < hrlRecHeaderSize {
		return hrlRec{}, nil, errHRLTornTail
	}
	hdr := make([]byte, hrlRecHeaderSize)
	if _, err := r.ReadAt(hdr, at); err != nil {
		return hrlRec{}, nil, &logCorruptError{Offset: at, Reason: fmt.Sprintf("read: %v", err)}
	}
	n := int64(binary.LittleEndian.Uint32(hdr[4:]))
	if binary.LittleEndian.Uint16(hdr[0:]) != hrlRecMagic ||
		crc32.Checksum(hdr[:24], hrlCRC) != binary.LittleEndian.Uint32(hdr[24:]) || n > hrlMaxRecordData {
		return hrlRec{}, nil, hrlTornOrCorrupt(r, at, fileSize, "bad record header")
	}
	if hrlRecHeaderSize+n > rest {
		return hrlRec{}, nil, errHRLTornTail
	}
	data := make([]byte, n)
	if n > 0 {
		if _, err := r.ReadAt(data, at+hrlRecHeaderSize); err != nil {
			return hrlRec{}, nil, &logCorruptError{Offset: at, Reason: fmt.Sprintf("read: %v", err)}
		}
	}
	if crc32.Checksum(data, hrlCRC) != binary.LittleEndian.Uint32(hdr[28:]) {
		if hrlRecHeaderSize+n == rest {
			return hrlRec{}, nil, errHRLTornTail
		}
		return hrlRec{}, nil, hrlTornOrCorrupt(r, at+hrlRecHeaderSize+n, fileSize, "record data checksum mismatch")
	}
	rec := hrlRec{
		kind: hdr[2], flags: hdr[3],
		a:      binary.LittleEndian.Uint64(hdr[8:]),
		b:      binary.LittleEndian.Uint64(hdr[16:]),
		dataAt: at + hrlRecHeaderSize, at: at, size: hrlRecHeaderSize + n,
	}
	return rec, data, nil
}

// hrlTornOrCorrupt decides about a bad record: only zeros up to the end of the
// file (blocks allocated but never written before a crash) is a torn tail.
func hrlTornOrCorrupt(r io.ReaderAt, at, fileSize int64, reason string) error {
	buf := make([]byte, 64<<10)
	for off := at; off < fileSize; off += int64(len(buf)) {
		n := min(int64(len(buf)), fileSize-off)
		if _, err := r.ReadAt(buf[:n], off); err != nil && !errors.Is(err, io.EOF) {
			return &logCorruptError{Offset: at, Reason: fmt.Sprintf("read: %v", err)}
		}
		for _, c := range buf[:n] {
			if c != 0 {
				return &logCorruptError{Offset: at, Reason: reason + " before the end of the log"}
			}
		}
	}
	return errHRLTornTail
}

// add folds one valid record into the scan, checking it against the header
// and the cycle numbering.
func (s *hrlScan) add(rec hrlRec, data []byte, next *uint64) error {
	bad := func(why string) error { return &logCorruptError{Offset: rec.at, Reason: why} }
	s.clean = false
	switch rec.kind {
	case hrlWrite, hrlZero:
		if rec.kind == hrlWrite && rec.b != uint64(len(data)) {
			return bad("write record length differs from its data")
		}
		if rec.kind == hrlZero && len(data) != 0 {
			return bad("zero record carries data")
		}
		if rec.a > uint64(s.header.diskSize) || rec.b > uint64(s.header.diskSize)-rec.a {
			return bad("record range outside the disk")
		}
		s.open = append(s.open, rec)
		s.redo = append(s.redo, rec)
	case hrlClose:
		if rec.a != *next {
			return bad(fmt.Sprintf("cycle %d closed where cycle %d was expected", rec.a, *next))
		}
		s.closed = append(s.closed, hrlCycle{
			seq: rec.a, closedAt: time.Unix(0, int64(rec.b)).UTC(),
			appConsistent: rec.flags&hrlFlagAppConsistent != 0,
			recs:          s.open, end: rec.at + rec.size,
		})
		s.open = nil
		*next++
	case hrlOpen:
		s.lastOpenBoot = string(data)
		s.redo = nil
	case hrlClean:
		s.clean = true
	case hrlResync:
		s.resync = string(data)
		if s.resync == "" {
			s.resync = "resync marker"
		}
	default:
		return bad(fmt.Sprintf("unknown record kind %d", rec.kind))
	}
	return nil
}
