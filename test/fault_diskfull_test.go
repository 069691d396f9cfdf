package test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestFaultRecoveryHostDiskFull runs the recovery agent on a small tmpfs,
// fills it, and writes more than fits at the source: the apply stops, the
// VM's health turns Critical, the replica stays equal to its last recovery
// point, and once space returns the cycles apply and the replica equals
// every acknowledged write.
func TestFaultRecoveryHostDiskFull(t *testing.T) {
	mnt := mountTmpfs(t, "8m")
	w := protectedWorld(t, worldOpts{rcvData: mnt, diskSize: 16 << 20})
	require.NoError(t, w.disk.write(2<<20, 256<<10, 0x22))
	w.requireReplicaEqualsSource(20 * time.Second)
	atLastPoint := w.disk.snapshot()

	filler := filepath.Join(mnt, "filler")
	fillUp(t, filler)
	writeStart := time.Now()
	require.NoError(t, w.disk.write(4<<20, 3<<20, 0x5e), "the source takes writes whatever the recovery host's disk")

	v := w.p.waitVM(vmName, 30*time.Second, "health Critical with the recovery host's disk full", func(v vmView) bool {
		return v.Health == "Critical"
	})
	t.Logf("health %s, issues %v, last error %+v", v.Health, v.Issues, v.LastError)
	requireSameBytes(t, atLastPoint, readImage(t, w.replicaImage()), "replica while the disk is full")
	v, _ = w.p.vm(vmName)
	require.False(t, pointAfter(writeStart)(v), "no recovery point holds the write that did not fit")

	require.NoError(t, os.Remove(filler))
	v = w.requireReplicaEqualsSource(30 * time.Second)
	requireNoGap(t, v)
	w.p.waitVM(vmName, 10*time.Second, "health Normal again", func(v vmView) bool { return v.Health == "Normal" })
}

// mountTmpfs mounts a tmpfs of size on a short temporary directory, or
// skips the test where mounting is not allowed (not root, a container
// without CAP_SYS_ADMIN).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := shortDir(t)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs (%v: %s): the recovery host's full disk is covered by hostsync's ENOSPC tests", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fillUp writes path until the file system has no space left.
func fillUp(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	require.NoError(t, err)
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			require.True(t, errors.Is(err, syscall.ENOSPC), "filling %s: %v", path, err)
			return
		}
	}
}
