package hostsync

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	mathrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/siterecovery/siterecovery/hostsync/cycle"
	"github.com/siterecovery/siterecovery/hostsync/cycle/cycletest"
	"github.com/stretchr/testify/require"
)

// requireNBDTools fails the test with a clear message when a real NBD
// client is missing.
func requireNBDTools(tb testing.TB, tools ...string) {
	tb.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			tb.Fatalf("%s not found: install the real NBD clients with `apt-get install -y qemu-utils libnbd-bin` (make test does)", tool)
		}
	}
}

// runTool runs an external NBD client and returns its combined output.
func runTool(tb testing.TB, name string, args ...string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	require.NoError(tb, err, "%s %s: %s", name, strings.Join(args, " "), out)
	return string(out)
}

// qemuIO runs qemu-io commands against an NBD URL and fails on a pattern
// mismatch.
func qemuIO(tb testing.TB, url string, cmds ...string) string {
	tb.Helper()
	args := []string{"-f", "raw", "-d", "unmap"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out := runTool(tb, "qemu-io", append(args, url)...)
	require.NotContains(tb, out, "fail", out)
	require.NotContains(tb, out, "error", out)
	return out
}

// nbdFixture is a server on a short Unix socket path serving tracked disks.
type nbdFixture struct {
	srv   *NBDServer
	sock  string
	dir   string
	disks map[string]*TrackedDisk
}

func startNBD(tb testing.TB, size int64, names ...string) *nbdFixture {
	tb.Helper()
	sockDir, err := os.MkdirTemp("", "nbd") // socket paths must stay short
	require.NoError(tb, err)
	tb.Cleanup(func() { require.NoError(tb, os.RemoveAll(sockDir)) })
	f := &nbdFixture{
		srv: NewNBDServer(zerolog.Nop()), sock: filepath.Join(sockDir, "s"),
		dir: tb.TempDir(), disks: map[string]*TrackedDisk{},
	}
	tb.Cleanup(func() { require.NoError(tb, f.srv.Close()) })
	for _, n := range names {
		d := mustOpenDisk(tb, filepath.Join(f.dir, n+".img"), size, DiskOptions{MaxLogBytes: 1 << 30})
		require.NoError(tb, f.srv.AddExport(n, d))
		f.disks[n] = d
	}
	require.NoError(tb, f.srv.ListenUnix(f.sock))
	return f
}

func (f *nbdFixture) url(name string) string { return NBDURL(name, f.sock) }

// byteModel tracks what a cycle must hold: per byte untouched, data or zero.
type byteModel struct {
	data  []byte
	state []byte // 0 untouched, 1 data, 2 zero
}

func newByteModel(size int64) *byteModel {
	return &byteModel{data: make([]byte, size), state: make([]byte, size)}
}

func (m *byteModel) write(off int64, p []byte) {
	copy(m.data[off:], p)
	for i := range p {
		m.state[off+int64(i)] = 1
	}
}

func (m *byteModel) zero(off, n int64) {
	clear(m.data[off : off+n])
	for i := off; i < off+n; i++ {
		m.state[i] = 2
	}
}

// extents gives the coalesced extents the model expects, as TrackedDisk
// builds them.
func (m *byteModel) extents(disk string) []cycle.Extent {
	var out []cycle.Extent
	for i := 0; i < len(m.state); {
		s := m.state[i]
		j := i
		for j < len(m.state) && m.state[j] == s {
			j++
		}
		if s != 0 {
			e := cycle.Extent{Disk: disk, Offset: int64(i), Length: int64(j - i), Zero: s == 2}
			if s == 1 {
				e.Data = append([]byte(nil), m.data[i:j]...)
			}
			out = append(out, e)
		}
		i = j
	}
	return out
}

func requireCycleExtents(t *testing.T, d *TrackedDisk, want []cycle.Extent) {
	t.Helper()
	seq, err := d.CloseCycle(time.Now(), false)
	require.NoError(t, err)
	c, err := d.Cycle(seq)
	require.NoError(t, err)
	require.Equal(t, len(want), len(c.Extents), "extents: %v", describeExtents(c.Extents))
	for i := range want {
		require.Equal(t, want[i], c.Extents[i], "extent %d", i)
	}
}

func describeExtents(es []cycle.Extent) string {
	var b strings.Builder
	for _, e := range es {
		fmt.Fprintf(&b, "[%d+%d zero=%v] ", e.Offset, e.Length, e.Zero)
	}
	return b.String()
}

func TestNBDQemuIOWriteReadVerifyAndTrackedCycle(t *testing.T) {
	requireNBDTools(t, "qemu-io")
	const size = 8 << 20
	f := startNBD(t, size, "disk0")
	url := f.url("disk0")
	m := newByteModel(size)

	qemuIO(t, url, "write -P 0xab 0 1M", "read -P 0xab 0 1M")
	m.write(0, bytes.Repeat([]byte{0xab}, 1<<20))
	qemuIO(t, url, "write -f -P 0xcd 512k 64k", "flush", "read -P 0xcd 512k 64k")
	m.write(512<<10, bytes.Repeat([]byte{0xcd}, 64<<10))
	qemuIO(t, url, "write -P 0x11 2M 1M", "discard 2M 256k", "write -z 2560k 128k", "read -P 0 2M 256k", "read -P 0 2560k 128k", "read -P 0x11 2304k 256k")
	m.write(2<<20, bytes.Repeat([]byte{0x11}, 1<<20))
	m.zero(2<<20, 256<<10)
	m.zero(2560<<10, 128<<10)
	qemuIO(t, url, "write -P 0x22 4M 4k", "write -P 0x33 4100k 4k")
	m.write(4<<20, bytes.Repeat([]byte{0x22}, 4096))
	m.write(4100<<10, bytes.Repeat([]byte{0x33}, 4096))

	requireCycleExtents(t, f.disks["disk0"], m.extents("disk0"))
	require.Equal(t, m.data, readImage(t, f.disks["disk0"].Path()))
}

func TestNBDCopyWholeDiskInAndOut(t *testing.T) {
	requireNBDTools(t, "nbdcopy", "qemu-img")
	const size = 8 << 20
	f := startNBD(t, size, "disk0")
	src := filepath.Join(t.TempDir(), "src.img")
	content := make([]byte, size)
	_, err := rand.Read(content)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(src, content, 0o600))

	runTool(t, "nbdcopy", src, f.url("disk0"))
	require.Equal(t, content, readImage(t, f.disks["disk0"].Path()))

	out1 := filepath.Join(t.TempDir(), "out1.img")
	runTool(t, "qemu-img", "convert", "-f", "raw", "-O", "raw", f.url("disk0"), out1)
	require.Equal(t, content, readImage(t, out1))
	out2 := filepath.Join(t.TempDir(), "out2.img")
	require.NoError(t, os.WriteFile(out2, nil, 0o600))
	runTool(t, "nbdcopy", f.url("disk0"), out2)
	require.Equal(t, content, readImage(t, out2))

	seq, err := f.disks["disk0"].CloseCycle(time.Now(), false)
	require.NoError(t, err)
	c, err := f.disks["disk0"].Cycle(seq)
	require.NoError(t, err)
	replica := make([]byte, size)
	applyCycle(replica, c)
	require.Equal(t, content, replica)
}

func TestNBDInfoListsExportsAndFlags(t *testing.T) {
	requireNBDTools(t, "nbdinfo")
	f := startNBD(t, 4<<20, "disk0", "disk1")
	out := runTool(t, "nbdinfo", "--list", "nbd+unix:///?socket="+f.sock)
	require.Contains(t, out, "disk0")
	require.Contains(t, out, "disk1")
	require.Equal(t, "4194304", strings.TrimSpace(runTool(t, "nbdinfo", "--size", f.url("disk1"))))

	var info struct {
		Exports []map[string]any `json:"exports"`
	}
	require.NoError(t, json.Unmarshal([]byte(runTool(t, "nbdinfo", "--json", f.url("disk0"))), &info))
	require.Len(t, info.Exports, 1)
	e := info.Exports[0]
	for _, k := range []string{"can_flush", "can_fua", "can_trim", "can_zero", "can_multi_conn"} {
		require.Equal(t, true, e[k], "%s in %v", k, e)
	}
	require.Equal(t, false, e["is_read_only"])
	require.EqualValues(t, 4096, e["block_size_preferred"])

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bad, err := exec.CommandContext(ctx, "nbdinfo", NBDURL("nope", f.sock)).CombinedOutput()
	require.Error(t, err, "an unknown export is refused: %s", bad)
}

func TestNBDSeveralClientsAtOnce(t *testing.T) {
	requireNBDTools(t, "qemu-io")
	const clients = 4
	f := startNBD(t, clients<<20, "disk0")
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			qemuIO(t, f.url("disk0"), fmt.Sprintf("write -P %#x %dM 1M", 0x40+i, i), "flush")
		}()
	}
	wg.Wait()
	var cmds []string
	for i := range clients {
		cmds = append(cmds, fmt.Sprintf("read -P %#x %dM 1M", 0x40+i, i))
	}
	qemuIO(t, f.url("disk0"), cmds...)
	m := newByteModel(clients << 20)
	for i := range clients {
		m.write(int64(i)<<20, bytes.Repeat([]byte{byte(0x40 + i)}, 1<<20))
	}
	requireCycleExtents(t, f.disks["disk0"], m.extents("disk0"))
}

func TestNBDTCPLoopback(t *testing.T) {
	requireNBDTools(t, "qemu-io")
	f := startNBD(t, 1<<20, "disk0")
	addr, err := f.srv.ListenTCP("127.0.0.1:0")
	require.NoError(t, err)
	qemuIO(t, "nbd://"+addr.String()+"/disk0", "write -P 0x5a 0 64k", "read -P 0x5a 0 64k")
}

func TestNBDURL(t *testing.T) {
	require.Equal(t, "nbd+unix:///disk0?socket=/run/sr/nbd.sock", NBDURL("disk0", "/run/sr/nbd.sock"))
	require.Equal(t, "nbd+unix:///a%20b?socket=/tmp/x%26y", NBDURL("a b", "/tmp/x&y"))
}

// TestNBDPipelinedMixedRequests sends small writes (run as they are read),
// a large write, trims, zeroings, a FUA write, reads and a flush all before
// reading any reply, in both reply modes: every request gets exactly one
// reply, right, and the disk and its tracked cycle hold every change.
func TestNBDPipelinedMixedRequests(t *testing.T) {
	t.Parallel()
	for _, structured := range []bool{false, true} {
		t.Run(fmt.Sprintf("structured=%v", structured), func(t *testing.T) {
			t.Parallel()
			const size = 8 << 20
			f := startNBD(t, size, "disk0")
			c := dialTestNBD(t, "unix", f.sock, "disk0", structured)
			model := newByteModel(size)
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
					model.zero(off, 8<<10)
				case 5:
					send(nbdCmdWriteZeroes, 0, off, 12<<10, nil)
					model.zero(off, 12<<10)
				case 7:
					data := randomBytes(rng, 4<<10)
					send(nbdCmdWrite, nbdCmdFlagFUA, off, len(data), data)
					model.write(off, data)
				case 9:
					send(nbdCmdRead, 0, off+32<<10, 4<<10, nil)
				default:
					data := randomBytes(rng, 4<<10)
					send(nbdCmdWrite, 0, off, len(data), data)
					model.write(off, data)
				}
			}
			big := randomBytes(rng, 256<<10)
			send(nbdCmdWrite, 0, 7<<20, len(big), big)
			model.write(7<<20, big)
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
			img, err := os.ReadFile(filepath.Join(f.dir, "disk0.img"))
			require.NoError(t, err)
			require.True(t, bytes.Equal(model.data, img), "image differs from the model")
			requireCycleExtents(t, f.disks["disk0"], model.extents("disk0"))
		})
	}
}

func randomBytes(rng *mathrand.Rand, n int) []byte {
	b := make([]byte, n)
	cycletest.FillRandom(rng, b)
	return b
}
