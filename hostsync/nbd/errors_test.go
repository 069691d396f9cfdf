package nbd

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/hostsync/nbd/nbdtest"
)

// recordingDisk wraps an ExportDisk and records the calls the server makes.
type recordingDisk struct {
	ExportDisk
	mu    sync.Mutex
	calls []string
}

var _ ExportDisk = (*recordingDisk)(nil)

func (r *recordingDisk) record(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, s)
}

func (r *recordingDisk) WriteAt(p []byte, off int64, fua bool) error {
	r.record(fmt.Sprintf("write %d+%d fua=%v", off, len(p), fua))
	return r.ExportDisk.WriteAt(p, off, fua)
}

func (r *recordingDisk) WriteZeroes(off, n int64, fua bool) error {
	r.record(fmt.Sprintf("zero %d+%d fua=%v", off, n, fua))
	return r.ExportDisk.WriteZeroes(off, n, fua)
}

func (r *recordingDisk) Trim(off, n int64, fua bool) error {
	r.record(fmt.Sprintf("trim %d+%d fua=%v", off, n, fua))
	return r.ExportDisk.Trim(off, n, fua)
}

func (r *recordingDisk) Flush() error {
	r.record("flush")
	return r.ExportDisk.Flush()
}

func (r *recordingDisk) Calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

func TestNBDQemuIOSendsFUAFlushTrimZero(t *testing.T) {
	nbdtest.RequireTools(t, "qemu-io")
	f := startNBD(t, 1<<20)
	rec := &recordingDisk{ExportDisk: newMemDisk(1 << 20)}
	require.NoError(t, f.srv.AddExport("r", rec))
	nbdtest.QemuIO(t, f.url("r"), "write -f -P 1 0 4k", "flush", "discard 64k 4k", "write -z 128k 4k")
	calls := filterFlushes(rec.Calls())
	require.Len(t, calls, 4, "%v", calls)
	require.Equal(t, []string{"write 0+4096 fua=true", "flush", "trim 65536+4096 fua=false"}, calls[:3])
	require.Contains(t, calls[3], "zero 131072+4096 ", "qemu chooses FUA for write -z itself")
}

// filterFlushes drops the flushes qemu sends on its own at close, keeping
// the first (asked for).
func filterFlushes(calls []string) []string {
	var out []string
	seen := false
	for _, c := range calls {
		if c == "flush" {
			if seen {
				continue
			}
			seen = true
		}
		out = append(out, c)
	}
	return out
}

func TestNBDRequestErrorsAndBounds(t *testing.T) {
	for _, structured := range []bool{false, true} {
		t.Run(fmt.Sprintf("structured=%v", structured), func(t *testing.T) {
			const size = 1 << 20
			f := startNBD(t, size, "disk0")
			c := dialTest(t, "unix", f.sock, "disk0", structured)
			require.Equal(t, int64(size), c.size)
			require.Equal(t, uint16(transmitFlags), c.flags)

			expect := func(errno uint32, typ, flags uint16, off uint64, n uint32, data []byte) {
				t.Helper()
				m, err := c.do(typ, flags, off, n, data)
				require.NoError(t, err)
				require.Equal(t, errno, m.errno, "type %d off %d len %d", typ, off, n)
			}
			expect(0, nbdCmdWrite, nbdCmdFlagFUA, 0, 3, []byte("abc"))
			expect(nbdEINVAL, nbdCmdRead, 0, size-1, 2, nil)
			expect(nbdEINVAL, nbdCmdRead, 0, 1<<62, 2, nil)
			expect(nbdENOSPC, nbdCmdWrite, 0, size-1, 2, []byte("zz"))
			expect(nbdENOSPC, nbdCmdTrim, 0, size, 1, nil)
			expect(nbdENOSPC, nbdCmdWriteZeroes, 0, ^uint64(0), 1, nil)
			expect(nbdEINVAL, 42, 0, 0, 0, nil)                     // unknown command
			expect(nbdEINVAL, nbdCmdRead, nbdCmdFlagFUA, 0, 1, nil) // flag not allowed
			expect(nbdEINVAL, nbdCmdRead, 0, 0, maxPayload+1, nil)
			expect(0, nbdCmdWriteZeroes, nbdCmdFlagNoHole|nbdCmdFlagFUA, 100, 10, nil)
			m, err := c.do(nbdCmdRead, 0, 0, 5, nil)
			require.NoError(t, err, "the connection survives refused requests")
			require.Equal(t, []byte("abc\x00\x00"), m.data)

			// An over-large write cannot be skipped: error, then disconnect.
			_, err = c.send(nbdCmdWrite, 0, 0, maxPayload+1, nil)
			require.NoError(t, err)
			m, err = c.recv(func(uint64) int { return 0 })
			require.NoError(t, err)
			require.Equal(t, uint32(nbdEINVAL), m.errno)
			_, err = c.recv(func(uint64) int { return 0 })
			require.Error(t, err, "server hung up")

			_, err = dial("unix", f.sock, "missing", structured)
			require.ErrorContains(t, err, "refused")
		})
	}
}

func TestNBDRemoveExportFencesClients(t *testing.T) {
	f := startNBD(t, 1<<20, "disk0", "disk1")
	c0 := dialTest(t, "unix", f.sock, "disk0", true)
	c1 := dialTest(t, "unix", f.sock, "disk1", true)
	m, err := c0.do(nbdCmdWrite, 0, 0, 2, []byte("hi"))
	require.NoError(t, err)
	require.Zero(t, m.errno)

	require.NoError(t, f.srv.RemoveExport("disk0"))
	_, err = c0.do(nbdCmdRead, 0, 0, 2, nil)
	require.Error(t, err, "the removed export's connection is closed")
	_, err = dial("unix", f.sock, "disk0", true)
	require.ErrorContains(t, err, "refused", "new clients are refused")
	m, err = c1.do(nbdCmdRead, 0, 0, 2, nil)
	require.NoError(t, err, "other exports keep serving")
	require.Zero(t, m.errno)

	require.ErrorIs(t, f.srv.RemoveExport("disk0"), ErrExportNotFound)
	require.ErrorIs(t, f.srv.AddExport("disk1", f.disks["disk1"]), ErrExportExists)
	require.Error(t, f.srv.AddExport("", f.disks["disk1"]))
	require.NoError(t, f.srv.AddExport("disk0", f.disks["disk0"]), "served again, e.g. after failback")
	c0 = dialTest(t, "unix", f.sock, "disk0", false)
	m, err = c0.do(nbdCmdRead, 0, 0, 2, nil)
	require.NoError(t, err)
	require.Equal(t, []byte("hi"), m.data)
	require.NoError(t, c0.disconnect())

	require.NotEmpty(t, f.srv.Exports())
	require.NoError(t, f.srv.Close())
	require.NoError(t, f.srv.Close(), "Close is safe twice")
	require.Empty(t, f.srv.Exports(), "nothing is served once closed")
	_, err = c1.do(nbdCmdRead, 0, 0, 2, nil)
	require.Error(t, err)
	require.ErrorIs(t, f.srv.AddExport("x", f.disks["disk1"]), ErrServerClosed)
}

func TestNBDListenUnixRefusesNonSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(path, nil, 0o600))
	s := NewServer(zerolog.Nop())
	defer func() { require.NoError(t, s.Close()) }()
	require.Error(t, s.ListenUnix(path))
}

// TestNBDRemoveExportIsAFence removes an export while a client pipelines
// writes to it: once RemoveExport returns, the disk sees no further call.
func TestNBDRemoveExportIsAFence(t *testing.T) {
	f := startNBD(t, 1<<20)
	rec := &recordingDisk{ExportDisk: newMemDisk(1 << 20)}
	require.NoError(t, f.srv.AddExport("r", rec))
	c := dialTest(t, "unix", f.sock, "r", true)
	offs := make([]int64, 100000)
	for i := range offs {
		offs[i] = int64(i%256) * 4096
	}
	done := make(chan error, 1)
	go func() { done <- c.pipelineWrites(offs, make([]byte, 4096), 16) }()
	deadline := time.Now().Add(10 * time.Second)
	for len(rec.Calls()) < 50 {
		require.True(t, time.Now().Before(deadline), "writes did not start")
		runtime.Gosched()
	}
	require.NoError(t, f.srv.RemoveExport("r"))
	n := len(rec.Calls())
	require.Error(t, <-done, "the client was cut off")
	require.Len(t, rec.Calls(), n, "no call reached the disk after RemoveExport returned")
}

// rawHandshake connects and sends the client flags, returning the
// client with the greeting read.
func rawHandshake(t *testing.T, sock string, clientFlags uint32) *Client {
	t.Helper()
	nc, err := net.Dial("unix", sock)
	require.NoError(t, err)
	t.Cleanup(func() { _ = nc.Close() }) // the server may have closed it already
	c := &Client{nc: nc, r: bufio.NewReader(nc)}
	greet := make([]byte, 18)
	_, err = io.ReadFull(c.r, greet)
	require.NoError(t, err)
	require.Equal(t, uint16(nbdFlagFixedNewstyle|nbdFlagNoZeroes), binary.BigEndian.Uint16(greet[16:]))
	_, err = nc.Write(binary.BigEndian.AppendUint32(nil, clientFlags))
	require.NoError(t, err)
	return c
}

func TestNBDOptionsExportNameAbortAndUnsupported(t *testing.T) {
	f := startNBD(t, 1<<20, "disk0")
	for _, noZeroes := range []bool{false, true} {
		flags := uint32(nbdFlagFixedNewstyle)
		if noZeroes {
			flags |= nbdFlagNoZeroes
		}
		c := rawHandshake(t, f.sock, flags)
		require.NoError(t, c.sendOpt(99, nil))
		typ, _, err := c.readOptReply()
		require.NoError(t, err)
		require.Equal(t, uint32(nbdRepErrUnsup), typ)
		require.NoError(t, c.sendOpt(nbdOptExportName, []byte("disk0")))
		reply := make([]byte, 10)
		_, err = io.ReadFull(c.r, reply)
		require.NoError(t, err)
		require.Equal(t, uint64(1<<20), binary.BigEndian.Uint64(reply))
		require.Equal(t, uint16(transmitFlags), binary.BigEndian.Uint16(reply[8:]))
		if !noZeroes {
			_, err = io.ReadFull(c.r, make([]byte, 124))
			require.NoError(t, err)
		}
		m, err := c.do(nbdCmdRead, 0, 0, 4, nil)
		require.NoError(t, err)
		require.Equal(t, make([]byte, 4), m.data)
	}

	c := rawHandshake(t, f.sock, nbdFlagFixedNewstyle)
	require.NoError(t, c.sendOpt(nbdOptAbort, nil))
	typ, _, err := c.readOptReply()
	require.NoError(t, err)
	require.Equal(t, uint32(nbdRepAck), typ)
	_, err = c.r.ReadByte()
	require.ErrorIs(t, err, io.EOF, "the server closes after an abort")

	c = rawHandshake(t, f.sock, nbdFlagFixedNewstyle)
	require.NoError(t, c.sendOpt(nbdOptExportName, []byte("missing")))
	_, err = c.r.ReadByte()
	require.ErrorIs(t, err, io.EOF, "an unknown export name closes the connection")

	c = rawHandshake(t, f.sock, 1<<7)
	_, err = c.r.ReadByte()
	require.ErrorIs(t, err, io.EOF, "unknown client flags close the connection")
}
