package disk

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func encodeTestRecord(kind uint8, off int64, data []byte) []byte {
	hdr := make([]byte, hrlRecHeaderSize)
	b := uint64(len(data))
	encodeHRLRecHeader(hdr, kind, 0, uint64(off), b, data)
	return append(hdr, data...)
}

func appendBytes(tb testing.TB, path string, b []byte) {
	tb.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(tb, err)
	_, err = f.Write(b)
	require.NoError(tb, err)
	require.NoError(tb, f.Close())
}

func appendRawRecord(tb testing.TB, path string, kind uint8, off int64, data []byte) {
	tb.Helper()
	appendBytes(tb, path, encodeTestRecord(kind, off, data))
}

func flipByte(tb testing.TB, path string, at int64) {
	tb.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(tb, err)
	b := []byte{0}
	_, err = f.ReadAt(b, at)
	require.NoError(tb, err)
	b[0] ^= 0x5a
	_, err = f.WriteAt(b, at)
	require.NoError(tb, err)
	require.NoError(tb, f.Close())
}

func TestChangeLogScanTornTailAndZeros(t *testing.T) {
	var log bytes.Buffer
	log.Write(encodeHRLHeader(hrlHeader{diskSize: 1 << 20, baseSeq: 5}))
	log.Write(encodeTestRecord(hrlWrite, 10, []byte("abc")))
	closeRec := make([]byte, hrlRecHeaderSize)
	encodeHRLRecHeader(closeRec, hrlClose, 0, 5, 42, nil)
	log.Write(closeRec)
	whole := log.Len()

	s, err := scanHRL(bytes.NewReader(log.Bytes()), int64(whole))
	require.NoError(t, err)
	require.False(t, s.torn)
	require.Len(t, s.closed, 1)
	require.Equal(t, uint64(5), s.closed[0].seq)

	torn := append(append([]byte(nil), log.Bytes()...), encodeTestRecord(hrlWrite, 0, []byte("xyz"))[:20]...)
	s, err = scanHRL(bytes.NewReader(torn), int64(len(torn)))
	require.NoError(t, err)
	require.True(t, s.torn)
	require.Equal(t, int64(whole), s.validEnd)

	zeros := append(append([]byte(nil), log.Bytes()...), make([]byte, 4096)...)
	s, err = scanHRL(bytes.NewReader(zeros), int64(len(zeros)))
	require.NoError(t, err)
	require.True(t, s.torn)

	wrongSeq := append([]byte(nil), log.Bytes()...)
	encodeHRLRecHeader(closeRec, hrlClose, 0, 9, 42, nil)
	wrongSeq = append(wrongSeq, closeRec...)
	_, err = scanHRL(bytes.NewReader(wrongSeq), int64(len(wrongSeq)))
	var ce *logCorruptError
	require.ErrorAs(t, err, &ce)
}

// A change log of another format version is never read: it does not
// decode, and the disk opens needing a resync that says why.
func TestChangeLogRefusesUnknownVersion(t *testing.T) {
	hdr := encodeHRLHeader(hrlHeader{diskSize: 1 << 20, baseSeq: 1})
	require.Equal(t, byte(hrlVersion), hdr[7], "the version byte follows the magic")
	hdr[7] = hrlVersion + 1
	_, err := scanHRL(bytes.NewReader(hdr), int64(len(hdr)))
	var ce *logCorruptError
	require.ErrorAs(t, err, &ce)
	require.Contains(t, ce.Reason, "unknown format version 2")

	path := filepath.Join(t.TempDir(), "d.img")
	d := mustOpenDisk(t, path, 1<<20, Options{})
	require.NoError(t, d.WriteAt([]byte("x"), 0, true))
	require.NoError(t, d.Close())
	f, err := os.OpenFile(path+".hrl", os.O_RDWR, 0)
	require.NoError(t, err)
	_, err = f.WriteAt([]byte{hrlVersion + 1}, 7)
	require.NoError(t, errors.Join(err, f.Close()))
	d2 := mustOpenDisk(t, path, 1<<20, Options{})
	ok, why := d2.NeedsResync()
	require.True(t, ok)
	require.Contains(t, why, "unknown format version 2")
}

func TestChangeLogCoalesceMatchesByteModel(t *testing.T) {
	recs := []hrlRec{
		{kind: hrlWrite, a: 0, b: 10, dataAt: 1000},
		{kind: hrlZero, a: 5, b: 10},
		{kind: hrlWrite, a: 12, b: 2, dataAt: 2000},
		{kind: hrlWrite, a: 30, b: 5, dataAt: 3000},
		{kind: hrlWrite, a: 0, b: 3, dataAt: 4000},
	}
	got := coalesceHRL(recs)
	require.Equal(t, []hrlPiece{
		{off: 0, end: 3, rec: 4}, {off: 3, end: 5, rec: 0}, {off: 5, end: 12, rec: 1},
		{off: 12, end: 14, rec: 2}, {off: 14, end: 15, rec: 1}, {off: 30, end: 35, rec: 3},
	}, got)
}

// FuzzChangeLogReader feeds garbage as a change log: reading it never
// panics; it either fails with a *logCorruptError (Open then
// reports NeedsResync) or yields records inside the disk whose cycles build.
func FuzzChangeLogReader(f *testing.F) {
	var seed bytes.Buffer
	seed.Write(encodeHRLHeader(hrlHeader{diskSize: 1 << 16, baseSeq: 1}))
	seed.Write(encodeTestRecord(hrlOpen, 0, []byte(testBoot)))
	seed.Write(encodeTestRecord(hrlWrite, 100, []byte("data")))
	closeRec := make([]byte, hrlRecHeaderSize)
	encodeHRLRecHeader(closeRec, hrlClose, 1, 1, 7, nil)
	seed.Write(closeRec)
	seed.Write(encodeTestRecord(hrlZero, 0, nil))
	f.Add(seed.Bytes())
	f.Add(seed.Bytes()[:90])
	f.Add([]byte("SRHRL"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		s, err := scanHRL(r, int64(len(data)))
		if err != nil {
			var ce *logCorruptError
			require.ErrorAs(t, err, &ce)
			return
		}
		checkScan(t, s, int64(len(data)))
		for _, c := range s.closed {
			ext, err := buildCycleExtents("f", c.recs, coalesceHRL(c.recs), r)
			require.NoError(t, err)
			for _, e := range ext {
				require.LessOrEqual(t, e.End(), s.header.diskSize)
				require.True(t, e.Zero || int64(len(e.Data)) == e.Length)
			}
		}
	})
}

func checkScan(t *testing.T, s *hrlScan, size int64) {
	require.LessOrEqual(t, s.validEnd, size)
	for i, c := range s.closed {
		require.Equal(t, s.header.baseSeq+uint64(i), c.seq)
		for _, r := range c.recs {
			require.LessOrEqual(t, r.off()+r.length(), s.header.diskSize)
		}
	}
}
