package disk

import (
	"context"
	"crypto/rand"
	mathrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/hostsync/nbd"
	"github.com/siterecovery/siterecovery/hostsync/nbd/nbdtest"
)

const benchDiskSize = 512 << 20

// startQemuNBD serves a plain raw file with qemu-nbd (the baseline) and
// waits until it accepts a client.
func startQemuNBD(b *testing.B, dir string) *nbd.Client {
	b.Helper()
	img := filepath.Join(dir, "plain.img")
	require.NoError(b, os.WriteFile(img, nil, 0o600))
	require.NoError(b, os.Truncate(img, benchDiskSize))
	sock := filepath.Join(dir, "q")
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "qemu-nbd", "-f", "raw", "-k", sock, "-x", "disk0", "-t", img)
	cmd.Stderr = os.Stderr
	require.NoError(b, cmd.Start())
	b.Cleanup(func() {
		cancel()
		_ = cmd.Wait() // killed by cancel: its exit status is expected to be an error
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := nbd.Dial("unix", sock, "disk0")
		if err == nil {
			b.Cleanup(func() { _ = c.Close() })
			return c
		}
		if time.Now().After(deadline) {
			b.Fatalf("qemu-nbd did not start: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // polling for the socket, bounded by the deadline
	}
}

// BenchmarkNBDWrite measures writes through the tracked NBD export against
// qemu-nbd serving a plain raw file, same client, same pattern, each
// iteration ending with a flush: 1 MiB sequential and 4 KiB random writes,
// 16 requests in flight. It reports both MB/s and their ratio.
func BenchmarkNBDWrite(b *testing.B) {
	nbdtest.RequireTools(b, "qemu-nbd")
	patterns := []struct {
		name   string
		block  int
		total  int
		random bool
	}{
		{"seq1M", 1 << 20, 128 << 20, false},
		{"rand4K", 4 << 10, 16 << 20, true},
	}
	for _, p := range patterns {
		b.Run(p.name, func(b *testing.B) {
			sockDir, err := os.MkdirTemp("", "nbdb")
			require.NoError(b, err)
			b.Cleanup(func() { require.NoError(b, os.RemoveAll(sockDir)) })
			qc := startQemuNBD(b, sockDir)
			f := startNBD(b, benchDiskSize, "disk0")
			tc, err := nbd.Dial("unix", f.sock, "disk0")
			require.NoError(b, err)
			b.Cleanup(func() { _ = tc.Close() })
			d := f.disks["disk0"]

			data := make([]byte, p.block)
			_, err = rand.Read(data)
			require.NoError(b, err)
			rng := mathrand.New(mathrand.NewPCG(1, 2))
			var tracked, plain time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				offs := benchOffsets(rng, p.block, p.total, p.random)
				block := func(int) []byte { return data }
				tracked += timeIt(b, func() error { return tc.WriteBlocks(offs, block, 16) })
				plain += timeIt(b, func() error { return qc.WriteBlocks(offs, block, 16) })
				b.StopTimer()
				seq, err := d.CloseCycle(time.Now(), false)
				require.NoError(b, err)
				require.NoError(b, d.Ack(seq))
				b.StartTimer()
			}
			mb := float64(p.total) * float64(b.N) / 1e6
			b.ReportMetric(mb/tracked.Seconds(), "tracked_MB/s")
			b.ReportMetric(mb/plain.Seconds(), "qemu-nbd_MB/s")
			b.ReportMetric(plain.Seconds()/tracked.Seconds(), "ratio")
		})
	}
}

func timeIt(b *testing.B, fn func() error) time.Duration {
	start := time.Now()
	require.NoError(b, fn())
	return time.Since(start)
}

func benchOffsets(rng *mathrand.Rand, block, total int, random bool) []int64 {
	offs := make([]int64, total/block)
	for i := range offs {
		if random {
			offs[i] = rng.Int64N(benchDiskSize/int64(block)) * int64(block)
		} else {
			offs[i] = int64(i * block)
		}
	}
	return offs
}
