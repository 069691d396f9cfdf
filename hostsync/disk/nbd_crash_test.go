package disk

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/hostsync/nbd"
	"github.com/siterecovery/siterecovery/hostsync/nbd/nbdtest"
)

const nbdChildEnv = "SR_NBD_KILL_CHILD"

// TestNBDKill9Child serves a tracked disk over NBD until it is killed; it
// runs only as the child of TestNBDTrackedWritesSurviveKill9.
func TestNBDKill9Child(t *testing.T) {
	dir := os.Getenv(nbdChildEnv)
	if dir == "" {
		t.Skip("runs only as the child of TestNBDTrackedWritesSurviveKill9")
	}
	d, err := Open(filepath.Join(dir, "disk0.img"), 4<<20, Options{})
	require.NoError(t, err)
	srv := nbd.NewServer(zerolog.Nop())
	require.NoError(t, srv.AddExport("disk0", d))
	require.NoError(t, srv.ListenUnix(filepath.Join(dir, "s")))
	fmt.Println("ready")
	select {} // until SIGKILL
}

// TestNBDTrackedWritesSurviveKill9 writes through a real NBD client to a
// server process, kills the server with SIGKILL, and checks that every
// acknowledged write is in the reopened disk and in its tracked changes.
func TestNBDTrackedWritesSurviveKill9(t *testing.T) {
	nbdtest.RequireTools(t, "qemu-io")
	dir, err := os.MkdirTemp("", "nbdk") // short: the socket lives here
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, os.RemoveAll(dir)) })
	cmd := exec.Command(os.Args[0], "-test.run=^TestNBDKill9Child$", "-test.count=1")
	cmd.Env = append(os.Environ(), nbdChildEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill() }) // already dead when the test passes
	sc := bufio.NewScanner(out)
	ready := make(chan bool, 1)
	go func() { ready <- sc.Scan() && sc.Text() == "ready" }()
	select {
	case ok := <-ready:
		require.True(t, ok, "child did not start")
	case <-time.After(30 * time.Second):
		t.Fatal("child did not start in time")
	}

	url := nbd.URL("disk0", filepath.Join(dir, "s"))
	nbdtest.QemuIO(t, url, "write -f -P 0x77 0 256k", "write -P 0x88 1M 64k", "flush", "write -z -f 2M 64k")
	require.NoError(t, cmd.Process.Kill())
	require.Error(t, cmd.Wait())

	boot, err := bootID("")
	require.NoError(t, err)
	d := mustOpenDisk(t, filepath.Join(dir, "disk0.img"), 4<<20, Options{BootID: boot})
	ok, why := d.NeedsResync()
	require.False(t, ok, why)
	m := newByteModel(4 << 20)
	m.write(0, bytes.Repeat([]byte{0x77}, 256<<10))
	m.write(1<<20, bytes.Repeat([]byte{0x88}, 64<<10))
	m.zero(2<<20, 64<<10)
	require.Equal(t, m.data, readImage(t, d.Path()))
	requireCycleExtents(t, d, m.extents("disk0"))
}
