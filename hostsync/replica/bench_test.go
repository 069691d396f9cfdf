package replica

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/hostsync/cycle"
	"github.com/siterecovery/siterecovery/hostsync/cycle/cycletest"
)

// BenchmarkReplicaApply applies cycles changing 1% of a 2 GiB sparse disk
// in random 64 KiB blocks, and in the same run writes the same blocks into
// a plain file with WriteAt and one fsync (the raw baseline). It reports
// both rates and their ratio.
func BenchmarkReplicaApply(b *testing.B) {
	const size, block = 2 << 30, 64 << 10
	const blocks = size / 100 / block // 1% of the disk per cycle
	dir := b.TempDir()
	r, err := Open(filepath.Join(dir, "replica"), "bench", []events.DiskSpec{{Name: "sda", Size: size}}, zerolog.Nop())
	require.NoError(b, err)
	defer r.Close()
	raw, err := os.Create(filepath.Join(dir, "raw.img"))
	require.NoError(b, err)
	defer raw.Close()
	require.NoError(b, raw.Truncate(size))

	rng := rand.New(rand.NewPCG(41, 42))
	data := make([]byte, blocks*block)
	cycletest.FillRandom(rng, data)
	var replicaTime, rawTime time.Duration
	var cycles int
	for b.Loop() {
		b.StopTimer()
		cycles++
		c := cycle.Cycle{VM: "bench", Epoch: 1, Seq: uint64(cycles), ClosedAt: time.Now()}
		for i := range blocks {
			off := rng.Int64N(size/block) * block
			c.Extents = append(c.Extents, cycle.Extent{Disk: "sda", Offset: off, Length: block, Data: data[i*block : (i+1)*block]})
		}
		b.StartTimer()
		start := time.Now()
		_, err := r.Apply(context.Background(), c)
		require.NoError(b, err)
		replicaTime += time.Since(start)
		b.StopTimer()
		start = time.Now()
		for _, e := range c.Extents {
			_, err := raw.WriteAt(e.Data, e.Offset)
			require.NoError(b, err)
		}
		require.NoError(b, raw.Sync())
		rawTime += time.Since(start)
		b.StartTimer()
	}
	mb := float64(cycles*blocks*block) / 1e6
	b.ReportMetric(mb/replicaTime.Seconds(), "replica_MB/s")
	b.ReportMetric(mb/rawTime.Seconds(), "raw_MB/s")
	b.ReportMetric(rawTime.Seconds()/replicaTime.Seconds(), "ratio_vs_raw")
}
