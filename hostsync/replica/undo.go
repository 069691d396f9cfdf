package replica

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"syscall"

	"github.com/siterecovery/siterecovery/hostsync/durable"
)

// An undo file (undo/<n>.undo) holds, for one recovery point, the bytes
// the replica had before that point's cycle was applied: written over the
// images at that point, they give the previous point. Format version 1
// (undoVersion): magic "SRUN", version (1), records (a zero record for a
// hole), CRC32C of everything before (4). A record, little endian: disk
// name length (2) and name, offset (8), length (8), flags (1: zero), then
// length bytes of data unless it is a zero record (the batch body's extent
// encoding, written down here for the file's own sake). A file of another
// version is refused with ErrVersion, never read as this one; a new layout
// takes a new version.
const (
	undoMagic    = "SRUN"
	undoVersion  = 1
	undoFlagZero = 1
)

// undoCRCTable is the CRC32C table of the undo file's checksum.
var undoCRCTable = crc32.MakeTable(crc32.Castagnoli)

// undoRec is one record of an undo file; its data sits at dataAt.
type undoRec struct {
	disk   string
	off    int64
	length int64
	zero   bool
	dataAt int64
}

func (u undoRec) end() int64 { return u.off + u.length }

// undoFile is an open undo file and the index of its records.
type undoFile struct {
	f    *os.File
	recs []undoRec
}

// undoWriter streams records to a new undo file.
type undoWriter struct {
	path string
	f    *os.File
	w    *bufio.Writer
	crc  hash.Hash32
}

func createUndo(path string) (*undoWriter, error) {
	f, err := os.OpenFile(path+".tmp", os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	u := &undoWriter{path: path, f: f, crc: crc32.New(undoCRCTable)}
	u.w = bufio.NewWriterSize(io.MultiWriter(f, u.crc), 1<<20)
	if _, err := u.w.Write(append([]byte(undoMagic), undoVersion)); err != nil {
		u.abort()
		return nil, err
	}
	return u, nil
}

func (u *undoWriter) add(disk string, off, length int64, zero bool, data []byte) error {
	var hdr []byte
	hdr = binary.LittleEndian.AppendUint16(hdr, uint16(len(disk)))
	hdr = append(hdr, disk...)
	hdr = binary.LittleEndian.AppendUint64(hdr, uint64(off))
	hdr = binary.LittleEndian.AppendUint64(hdr, uint64(length))
	flag := byte(0)
	if zero {
		flag = undoFlagZero
	}
	if _, err := u.w.Write(append(hdr, flag)); err != nil {
		return err
	}
	_, err := u.w.Write(data)
	return err
}

// finish seals, syncs and renames the file into place.
func (u *undoWriter) finish() error { return u.finishAs(u.path) }

// finishAs seals and syncs the file and renames it to path.
func (u *undoWriter) finishAs(path string) error {
	if err := u.w.Flush(); err != nil {
		u.abort()
		return err
	}
	if _, err := u.f.Write(binary.LittleEndian.AppendUint32(nil, u.crc.Sum32())); err != nil {
		u.abort()
		return err
	}
	if err := u.f.Sync(); err != nil {
		u.abort()
		return err
	}
	if err := u.f.Close(); err != nil {
		os.Remove(u.path + ".tmp")
		return err
	}
	if err := os.Rename(u.path+".tmp", path); err != nil {
		os.Remove(u.path + ".tmp")
		return err
	}
	return durable.SyncParentDir(path)
}

func (u *undoWriter) abort() {
	u.f.Close()
	os.Remove(u.path + ".tmp")
}

// openUndo opens an undo file, checks its CRC and indexes its records.
func openUndo(path string) (*undoFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	recs, err := indexUndo(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("undo %s: %w", path, err)
	}
	return &undoFile{f: f, recs: recs}, nil
}

func indexUndo(f *os.File) ([]undoRec, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrState, err)
	}
	end := st.Size() - 4
	crc := crc32.New(undoCRCTable)
	r := bufio.NewReaderSize(io.TeeReader(io.NewSectionReader(f, 0, max(end, 0)), crc), 1<<20)
	if err := readUndoHeader(r); err != nil {
		return nil, err
	}
	var recs []undoRec
	for pos := int64(5); pos < end; {
		rec, n, err := readUndoRec(r, pos)
		if err != nil {
			return nil, fmt.Errorf("%w: record at %d: %w", ErrState, pos, err)
		}
		recs = append(recs, rec)
		pos += n
	}
	var sum [4]byte
	if _, err := f.ReadAt(sum[:], end); err != nil || binary.LittleEndian.Uint32(sum[:]) != crc.Sum32() {
		return nil, fmt.Errorf("%w: CRC mismatch", ErrState)
	}
	return recs, nil
}

// readUndoHeader reads the magic and the version: a file of another
// version is refused before any record is read.
func readUndoHeader(r io.Reader) error {
	head := make([]byte, 5)
	if _, err := io.ReadFull(r, head); err != nil || string(head[:4]) != undoMagic {
		return fmt.Errorf("%w: bad header", ErrState)
	}
	if head[4] != undoVersion {
		return fmt.Errorf("%w: version %d, this build reads %d", ErrVersion, head[4], undoVersion)
	}
	return nil
}

// readUndoRec reads one record header at pos and skips its data.
func readUndoRec(r *bufio.Reader, pos int64) (undoRec, int64, error) {
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return undoRec{}, 0, err
	}
	n := int(binary.LittleEndian.Uint16(l[:]))
	buf := make([]byte, n+17)
	if _, err := io.ReadFull(r, buf); err != nil {
		return undoRec{}, 0, err
	}
	rec := undoRec{
		disk: string(buf[:n]), off: int64(binary.LittleEndian.Uint64(buf[n:])),
		length: int64(binary.LittleEndian.Uint64(buf[n+8:])), zero: buf[n+16]&undoFlagZero != 0,
	}
	size := int64(2 + n + 17)
	rec.dataAt = pos + size
	if !rec.zero {
		if _, err := r.Discard(int(rec.length)); err != nil {
			return undoRec{}, 0, err
		}
		size += rec.length
	}
	return rec, size, nil
}

// read returns part [off, off+n) of a record's bytes (zeros for a zero
// record).
func (u *undoFile) read(rec undoRec, off int64, p []byte) error {
	if rec.zero {
		clear(p)
		return nil
	}
	_, err := u.f.ReadAt(p, rec.dataAt+off-rec.off)
	return err
}

func (u *undoFile) close() error { return u.f.Close() }

// imageWriteRange writes p at off, or zeros length bytes at off when p is nil:
// a hole is punched (no space needed) or zeros written where punching is
// not supported.
func imageWriteRange(f *os.File, off, length int64, p []byte) error {
	if p != nil {
		_, err := f.WriteAt(p, off)
		return err
	}
	const punch = 0x02 | 0x01 // FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
	if err := syscall.Fallocate(int(f.Fd()), punch, off, length); err == nil {
		return nil
	}
	zeros := make([]byte, min(length, 1<<20))
	for done := int64(0); done < length; {
		n := min(int64(len(zeros)), length-done)
		if _, err := f.WriteAt(zeros[:n], off+done); err != nil {
			return err
		}
		done += n
	}
	return nil
}

// imageReserve allocates the blocks of [off, off+length) so that writing there
// cannot fail for lack of space. Contents are unchanged.
func imageReserve(f *os.File, off, length int64) error {
	const keepSize = 0x01
	err := syscall.Fallocate(int(f.Fd()), keepSize, off, length)
	if errors.Is(err, syscall.EOPNOTSUPP) {
		return nil
	}
	return err
}

// copyUndoRec writes a record of u into f.
func copyUndoRec(f *os.File, u *undoFile, rec undoRec) error {
	if rec.zero {
		return imageWriteRange(f, rec.off, rec.length, nil)
	}
	buf := make([]byte, min(rec.length, 1<<20))
	for done := int64(0); done < rec.length; {
		n := min(int64(len(buf)), rec.length-done)
		if err := u.read(rec, rec.off+done, buf[:n]); err != nil {
			return err
		}
		if _, err := f.WriteAt(buf[:n], rec.off+done); err != nil {
			return err
		}
		done += n
	}
	return nil
}
