package nbd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	mathrand "math/rand/v2"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/hostsync/nbd/nbdtest"
)

// memDisk is an in-memory ExportDisk, the disk the protocol tests and the
// fuzzer serve. Besides the bytes it keeps what became of each byte
// (untouched, written, zeroed), so that a test can compare the calls the
// server made with a model: another memDisk given the expected changes.
type memDisk struct {
	mu    sync.Mutex
	buf   []byte
	state []byte // per byte: 0 untouched, 1 written, 2 zeroed (trim, write zeroes)
}

var _ ExportDisk = (*memDisk)(nil)

func newMemDisk(size int64) *memDisk {
	return &memDisk{buf: make([]byte, size), state: make([]byte, size)}
}

func (m *memDisk) Size() int64 { return int64(len(m.buf)) }

func (m *memDisk) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return copy(p, m.buf[off:]), nil
}

func (m *memDisk) WriteAt(p []byte, off int64, _ bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	copy(m.buf[off:], p)
	fillState(m.state[off:off+int64(len(p))], 1)
	return nil
}

func (m *memDisk) WriteZeroes(off, n int64, _ bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.buf[off : off+n])
	fillState(m.state[off:off+n], 2)
	return nil
}

func (m *memDisk) Trim(off, n int64, fua bool) error { return m.WriteZeroes(off, n, fua) }
func (m *memDisk) Flush() error                      { return nil }

func fillState(s []byte, v byte) {
	for i := range s {
		s[i] = v
	}
}

// requireSameDisk fails unless got holds want's bytes, changed by the same
// kinds of calls.
func requireSameDisk(t *testing.T, want, got *memDisk) {
	t.Helper()
	got.mu.Lock()
	defer got.mu.Unlock()
	require.True(t, bytes.Equal(want.buf, got.buf), "disk bytes differ from the model")
	require.True(t, bytes.Equal(want.state, got.state), "disk was written or zeroed elsewhere than the model")
}

// fixture is a server on a short Unix socket path serving in-memory
// disks.
type fixture struct {
	srv   *Server
	sock  string
	disks map[string]*memDisk
}

func startNBD(tb testing.TB, size int64, names ...string) *fixture {
	tb.Helper()
	f := &fixture{srv: NewServer(zerolog.Nop()), disks: map[string]*memDisk{}}
	for _, n := range names {
		f.disks[n] = newMemDisk(size)
		require.NoError(tb, f.srv.AddExport(n, f.disks[n]))
	}
	f.sock = nbdtest.ListenUnix(tb, f.srv)
	return f
}

func (f *fixture) url(name string) string { return URL(name, f.sock) }

func TestNBDInfoListsExportsAndFlags(t *testing.T) {
	nbdtest.RequireTools(t, "nbdinfo")
	f := startNBD(t, 4<<20, "disk0", "disk1")
	out := nbdtest.RunTool(t, "nbdinfo", "--list", "nbd+unix:///?socket="+f.sock)
	require.Contains(t, out, "disk0")
	require.Contains(t, out, "disk1")
	require.Equal(t, "4194304", strings.TrimSpace(nbdtest.RunTool(t, "nbdinfo", "--size", f.url("disk1"))))

	var info struct {
		Exports []map[string]any `json:"exports"`
	}
	require.NoError(t, json.Unmarshal([]byte(nbdtest.RunTool(t, "nbdinfo", "--json", f.url("disk0"))), &info))
	require.Len(t, info.Exports, 1)
	e := info.Exports[0]
	for _, k := range []string{"can_flush", "can_fua", "can_trim", "can_zero", "can_multi_conn"} {
		require.Equal(t, true, e[k], "%s in %v", k, e)
	}
	require.Equal(t, false, e["is_read_only"])
	require.EqualValues(t, 4096, e["block_size_preferred"])

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bad, err := exec.CommandContext(ctx, "nbdinfo", URL("nope", f.sock)).CombinedOutput()
	require.Error(t, err, "an unknown export is refused: %s", bad)
}

func TestNBDTCPLoopback(t *testing.T) {
	nbdtest.RequireTools(t, "qemu-io")
	f := startNBD(t, 1<<20, "disk0")
	addr, err := f.srv.ListenTCP("127.0.0.1:0")
	require.NoError(t, err)
	nbdtest.QemuIO(t, "nbd://"+addr.String()+"/disk0", "write -P 0x5a 0 64k", "read -P 0x5a 0 64k")
}

func TestNBDURL(t *testing.T) {
	require.Equal(t, "nbd+unix:///disk0?socket=/run/sr/nbd.sock", URL("disk0", "/run/sr/nbd.sock"))
	require.Equal(t, "nbd+unix:///a%20b?socket=/tmp/x%26y", URL("a b", "/tmp/x&y"))
}

// TestNBDPipelinedMixedRequests sends small writes (run as they are read),
// a large write, trims, zeroings, a FUA write, reads and a flush all before
// reading any reply, in both reply modes: every request gets exactly one
// reply, right, and the disk got every change as the right call.
func TestNBDPipelinedMixedRequests(t *testing.T) {
	t.Parallel()
	for _, structured := range []bool{false, true} {
		t.Run(fmt.Sprintf("structured=%v", structured), func(t *testing.T) {
			t.Parallel()
			const size = 8 << 20
			f := startNBD(t, size, "disk0")
			c := dialTest(t, "unix", f.sock, "disk0", structured)
			model := newMemDisk(size)
			rng := mathrand.New(mathrand.NewPCG(7, 8))
			reads := map[uint64]int64{} // cookie → offset of a read of untouched bytes
			var cookies []uint64
			send := func(typ, flags uint16, off int64, n int, data []byte) {
				cookie, err := c.send(typ, flags, uint64(off), uint32(n), data)
				require.NoError(t, err)
				cookies = append(cookies, cookie)
				if typ == nbdCmdRead {
					reads[cookie] = off
				}
			}
			// Slot i of 64 KiB holds request i: no two requests overlap, so
			// their order on the server does not matter.
			for i := range 100 {
				off := int64(i) * 64 << 10
				switch i % 10 {
				case 3:
					send(nbdCmdTrim, 0, off, 8<<10, nil)
					require.NoError(t, model.Trim(off, 8<<10, false))
				case 5:
					send(nbdCmdWriteZeroes, 0, off, 12<<10, nil)
					require.NoError(t, model.WriteZeroes(off, 12<<10, false))
				case 7:
					data := randomBytes(rng, 4<<10)
					send(nbdCmdWrite, nbdCmdFlagFUA, off, len(data), data)
					require.NoError(t, model.WriteAt(data, off, false))
				case 9:
					send(nbdCmdRead, 0, off+32<<10, 4<<10, nil)
				default:
					data := randomBytes(rng, 4<<10)
					send(nbdCmdWrite, 0, off, len(data), data)
					require.NoError(t, model.WriteAt(data, off, false))
				}
			}
			big := randomBytes(rng, 256<<10)
			send(nbdCmdWrite, 0, 7<<20, len(big), big)
			require.NoError(t, model.WriteAt(big, 7<<20, false))
			send(nbdCmdFlush, 0, 0, 0, nil)

			got := map[uint64]bool{}
			for range cookies {
				m, err := c.recv(func(cookie uint64) int {
					if _, ok := reads[cookie]; ok {
						return 4 << 10
					}
					return 0
				})
				require.NoError(t, err)
				require.Zero(t, m.errno, "cookie %d", m.cookie)
				require.False(t, got[m.cookie], "cookie %d answered twice", m.cookie)
				got[m.cookie] = true
				if _, ok := reads[m.cookie]; ok {
					require.Equal(t, make([]byte, 4<<10), m.data, "read of untouched bytes")
				}
			}
			require.Len(t, got, len(cookies))
			requireSameDisk(t, model, f.disks["disk0"])
		})
	}
}

func randomBytes(rng *mathrand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}
