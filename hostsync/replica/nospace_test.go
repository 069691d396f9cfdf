package replica

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/hostsync/cycle"
	"github.com/siterecovery/siterecovery/hostsync/cycle/cycletest"
)

// mountSmallTmpfs mounts a tmpfs of size bytes, or skips the test where
// mounting is not allowed.
func mountSmallTmpfs(t *testing.T, size string) string {
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs (%v: %s); the hook-based TestReplicaNoSpace covers ENOSPC", err, out)
	}
	t.Cleanup(func() { require.NoError(t, exec.Command("umount", dir).Run()) })
	return dir
}

func freeBytes(t *testing.T, dir string) int64 {
	var st syscall.Statfs_t
	require.NoError(t, syscall.Statfs(dir, &st))
	return int64(st.Bavail) * st.Bsize
}

// TestReplicaNoSpaceOnAFullFileSystem fills a real tmpfs to different
// levels: an apply either succeeds or fails whole with ErrNoSpace, the
// replica then still at its previous point, and succeeds once space is
// freed.
func TestReplicaNoSpaceOnAFullFileSystem(t *testing.T) {
	t.Parallel()
	mnt := mountSmallTmpfs(t, "6m")
	const diskSize = 16 << 20
	disks := []events.DiskSpec{{Name: "sda", Size: diskSize}}
	r, err := Open(filepath.Join(mnt, "replica"), "web01", disks, zerolog.Nop())
	require.NoError(t, err)
	defer r.Close()
	model := make([]byte, diskSize)
	rng := rand.New(rand.NewPCG(51, 52))
	filler := filepath.Join(mnt, "filler")
	refused := 0
	for seq := uint64(1); seq <= 10; seq++ {
		c := cycle.Cycle{VM: "web01", Epoch: 1, Seq: seq, ClosedAt: replicaTestTime0.Add(time.Duration(seq) * time.Minute)}
		for range 4 {
			// Slots overlap often: new blocks need room in the image,
			// overwritten ones in the undo file.
			e := cycle.Extent{Disk: "sda", Offset: rng.Int64N(48) * 40960, Length: 64 << 10}
			e.Data = make([]byte, e.Length)
			cycletest.FillRandom(rng, e.Data)
			c.Extents = append(c.Extents, e)
		}
		leave := rng.Int64N(600 << 10) // free space left: from nothing to enough
		fill(t, filler, max(freeBytes(t, mnt)-leave, 0))
		_, err := r.Apply(context.Background(), c)
		if err != nil {
			require.ErrorIs(t, err, ErrNoSpace)
			refused++
			t.Logf("cycle %d: %v", seq, err)
			requireImage(t, r, "sda", model)
			require.NoError(t, os.Remove(filler))
			_, err = r.Apply(context.Background(), c)
		}
		require.NoError(t, err)
		for _, e := range c.Extents {
			copy(model[e.Offset:], e.Data)
		}
		requireImage(t, r, "sda", model)
		os.Remove(filler)
		_, err = r.Prune(c.ClosedAt.Add(3*time.Hour), RetentionPolicy{Retention: time.Hour})
		require.NoError(t, err)
	}
	require.Positive(t, refused, "no apply hit a full file system")
	t.Logf("%d of 10 applies refused for lack of space, then retried", refused)
}

func fill(t *testing.T, path string, n int64) {
	f, err := os.Create(path)
	require.NoError(t, err)
	defer f.Close()
	buf := make([]byte, 64<<10)
	for done := int64(0); done < n; done += int64(len(buf)) {
		if _, err := f.Write(buf[:min(int64(len(buf)), n-done)]); err != nil {
			require.True(t, errors.Is(err, syscall.ENOSPC), "filling: %v", err)
			return
		}
	}
}

func requireImage(t *testing.T, r *Replica, disk string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(r.ImagePath(disk))
	require.NoError(t, err)
	require.True(t, bytesEqual(want, got), "image %s differs from the model", disk)
}

func bytesEqual(a, b []byte) bool { return string(a) == string(b) }
