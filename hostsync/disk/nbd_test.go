package disk

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/hostsync/cycle"
	"github.com/siterecovery/siterecovery/hostsync/nbd"
	"github.com/siterecovery/siterecovery/hostsync/nbd/nbdtest"
)

// The tracked disk served over NBD to real clients: what they write is
// in the image and, coalesced, in the disk's tracked cycles.

// nbdFixture is an NBD server on a short Unix socket path serving tracked
// disks.
type nbdFixture struct {
	srv   *nbd.Server
	sock  string
	dir   string
	disks map[string]*Tracked
}

func startNBD(tb testing.TB, size int64, names ...string) *nbdFixture {
	tb.Helper()
	f := &nbdFixture{srv: nbd.NewServer(zerolog.Nop()), dir: tb.TempDir(), disks: map[string]*Tracked{}}
	for _, n := range names {
		f.disks[n] = mustOpenDisk(tb, filepath.Join(f.dir, n+".img"), size, Options{MaxLogBytes: 1 << 30})
		require.NoError(tb, f.srv.AddExport(n, f.disks[n]))
	}
	f.sock = nbdtest.ListenUnix(tb, f.srv)
	return f
}

func (f *nbdFixture) url(name string) string { return nbd.URL(name, f.sock) }

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

// extents gives the coalesced extents the model expects, as Tracked
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

func requireCycleExtents(t *testing.T, d *Tracked, want []cycle.Extent) {
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
	nbdtest.RequireTools(t, "qemu-io")
	const size = 8 << 20
	f := startNBD(t, size, "disk0")
	url := f.url("disk0")
	m := newByteModel(size)

	nbdtest.QemuIO(t, url, "write -P 0xab 0 1M", "read -P 0xab 0 1M")
	m.write(0, bytes.Repeat([]byte{0xab}, 1<<20))
	nbdtest.QemuIO(t, url, "write -f -P 0xcd 512k 64k", "flush", "read -P 0xcd 512k 64k")
	m.write(512<<10, bytes.Repeat([]byte{0xcd}, 64<<10))
	nbdtest.QemuIO(t, url, "write -P 0x11 2M 1M", "discard 2M 256k", "write -z 2560k 128k", "read -P 0 2M 256k", "read -P 0 2560k 128k", "read -P 0x11 2304k 256k")
	m.write(2<<20, bytes.Repeat([]byte{0x11}, 1<<20))
	m.zero(2<<20, 256<<10)
	m.zero(2560<<10, 128<<10)
	nbdtest.QemuIO(t, url, "write -P 0x22 4M 4k", "write -P 0x33 4100k 4k")
	m.write(4<<20, bytes.Repeat([]byte{0x22}, 4096))
	m.write(4100<<10, bytes.Repeat([]byte{0x33}, 4096))

	requireCycleExtents(t, f.disks["disk0"], m.extents("disk0"))
	require.Equal(t, m.data, readImage(t, f.disks["disk0"].Path()))
}

func TestNBDCopyWholeDiskInAndOut(t *testing.T) {
	nbdtest.RequireTools(t, "nbdcopy", "qemu-img")
	const size = 8 << 20
	f := startNBD(t, size, "disk0")
	src := filepath.Join(t.TempDir(), "src.img")
	content := make([]byte, size)
	_, err := rand.Read(content)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(src, content, 0o600))

	nbdtest.RunTool(t, "nbdcopy", src, f.url("disk0"))
	require.Equal(t, content, readImage(t, f.disks["disk0"].Path()))

	out1 := filepath.Join(t.TempDir(), "out1.img")
	nbdtest.RunTool(t, "qemu-img", "convert", "-f", "raw", "-O", "raw", f.url("disk0"), out1)
	require.Equal(t, content, readImage(t, out1))
	out2 := filepath.Join(t.TempDir(), "out2.img")
	require.NoError(t, os.WriteFile(out2, nil, 0o600))
	nbdtest.RunTool(t, "nbdcopy", f.url("disk0"), out2)
	require.Equal(t, content, readImage(t, out2))

	seq, err := f.disks["disk0"].CloseCycle(time.Now(), false)
	require.NoError(t, err)
	c, err := f.disks["disk0"].Cycle(seq)
	require.NoError(t, err)
	replica := make([]byte, size)
	applyCycle(replica, c)
	require.Equal(t, content, replica)
}

func TestNBDSeveralClientsAtOnce(t *testing.T) {
	nbdtest.RequireTools(t, "qemu-io")
	const clients = 4
	f := startNBD(t, clients<<20, "disk0")
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nbdtest.QemuIO(t, f.url("disk0"), fmt.Sprintf("write -P %#x %dM 1M", 0x40+i, i), "flush")
		}()
	}
	wg.Wait()
	var cmds []string
	for i := range clients {
		cmds = append(cmds, fmt.Sprintf("read -P %#x %dM 1M", 0x40+i, i))
	}
	nbdtest.QemuIO(t, f.url("disk0"), cmds...)
	m := newByteModel(clients << 20)
	for i := range clients {
		m.write(int64(i)<<20, bytes.Repeat([]byte{byte(0x40 + i)}, 1<<20))
	}
	requireCycleExtents(t, f.disks["disk0"], m.extents("disk0"))
}
