package projections

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	bolt "go.etcd.io/bbolt"

	"github.com/siterecovery/siterecovery/events"
)

const benchEvents = 100_000

var (
	benchOnce  sync.Once
	benchLog   *events.MemLog
	benchSizes []int // the envelope size of each event, for the raw baseline
)

// realisticLog is a log of 100k events of 200 VMs as production makes
// them: creation, enable, initial replication with progress, then mostly
// recovery points every cycle, pruned by retention, and health changes.
func realisticLog(b *testing.B) (*events.MemLog, []int) {
	benchOnce.Do(func() {
		benchLog = events.NewMemLog()
		w := newWorld(b, benchLog)
		w.buildFabric()
		const vms = 200
		for i := range vms {
			name := fmt.Sprintf("vm%03d", i)
			agg, corr := events.VMAgg(name), "enable-"+name
			w.emit(agg, "create-"+name, events.VMCreatedData{Name: name, Host: "hv01", Site: "primary", Cloud: "gold",
				Disks: []events.DiskSpec{{Name: "disk0", Size: 1 << 34}, {Name: "disk1", Size: 1 << 30}}})
			w.emit(agg, corr, enableData(name))
			w.emit(agg, corr, events.InitialReplicationStartedData{TotalBytes: 1 << 34})
			for p := range 10 {
				w.emit(agg, corr, events.InitialReplicationProgressData{DoneBytes: int64(p) << 30, TotalBytes: 1 << 34})
			}
			w.emit(agg, corr, events.InitialReplicationCompletedData{SentBytes: 1 << 34})
		}
		for n := 0; w.n < benchEvents-len(benchSizes); n++ {
			name := fmt.Sprintf("vm%03d", n%vms)
			cycle := n / vms
			d := events.Data(events.RecoveryPointCreatedData{ID: fmt.Sprintf("rp-%06d", cycle), Time: w.at,
				AppConsistent: cycle%8 == 0, Cycle: uint64(cycle), Epoch: 1, Bytes: 1 << 20,
				Roots: map[string]string{"disk0": "b3a1c2d4e5f60718", "disk1": "0918a7b6c5d4e3f2"}})
			switch {
			case cycle >= retained && cycle%10 == 0:
				d = events.RecoveryPointsPrunedData{IDs: pointIDs(cycle-retained, 10)}
			case n%97 == 0:
				d = events.HealthChangedData{Health: events.HealthWarning, Issues: []string{"rpo above threshold"}}
			}
			w.emit(events.VMAgg(name), fmt.Sprintf("agent-%d", n), d)
		}
		benchSizes = envelopeSizes(b, benchLog)
	})
	return benchLog, benchSizes
}

// retained is how many points a VM keeps: an hour of 30 s cycles.
const retained = 120

func pointIDs(from, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("rp-%06d", from+i)
	}
	return ids
}

func envelopeSizes(b *testing.B, log *events.MemLog) []int {
	cur, err := log.Follow(context.Background(), 1)
	if err != nil {
		b.Fatal(err)
	}
	defer cur.Close()
	var sizes []int
	for len(sizes) < benchEvents {
		recs, err := cur.Next(context.Background(), 1000)
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range recs {
			raw, err := events.Encode(r.Meta, r.Data)
			if err != nil {
				b.Fatal(err)
			}
			sizes = append(sizes, len(raw))
		}
	}
	return sizes
}

// BenchmarkReplay replays 100k events into a fresh file and, in the same
// iteration, puts as many values of the events' sizes into a fresh bbolt
// file in transactions of the same batch size: the raw cost of bbolt for
// that much data. ratio is projection events/s over raw puts/s.
func BenchmarkReplay(b *testing.B) {
	log, sizes := realisticLog(b)
	for _, batch := range []int{1000, defaultBatch} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			var replay, replayCPU, raw time.Duration
			for b.Loop() {
				cpu := cpuTime(b)
				replay += replayOnce(b, log, batch)
				replayCPU += cpuTime(b) - cpu
				raw += rawPuts(b, sizes, batch)
			}
			n := float64(b.N) * float64(len(sizes))
			b.ReportMetric(n/replay.Seconds(), "events/s")
			// events per CPU second: what one core does, whatever else
			// the machine runs.
			b.ReportMetric(n/replayCPU.Seconds(), "events/cpu-s")
			b.ReportMetric(n/raw.Seconds(), "raw-puts/s")
			b.ReportMetric(raw.Seconds()/replay.Seconds(), "ratio")
		})
	}
}

// cpuTime is the CPU time the process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func replayOnce(b *testing.B, log *events.MemLog, batch int) time.Duration {
	path := filepath.Join(b.TempDir(), "projections.db")
	start := time.Now()
	s, err := open(context.Background(), path, log, zerolog.Nop(), withBatch(batch))
	if err != nil {
		b.Fatal(err)
	}
	last, _ := log.LastSeq(context.Background())
	if err := s.WaitFor(context.Background(), last); err != nil {
		b.Fatal(err)
	}
	took := time.Since(start)
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	return took
}

func rawPuts(b *testing.B, sizes []int, batch int) time.Duration {
	db, err := bolt.Open(filepath.Join(b.TempDir(), "raw.db"), 0o600, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	val := make([]byte, 4096)
	start := time.Now()
	for i := 0; i < len(sizes); i += batch {
		err := db.Update(func(tx *bolt.Tx) error {
			bk, err := tx.CreateBucketIfNotExists([]byte("raw"))
			if err != nil {
				return err
			}
			for j := i; j < min(i+batch, len(sizes)); j++ {
				if err := bk.Put(u64(uint64(j+1)), val[:min(sizes[j], len(val))]); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	return time.Since(start)
}

// BenchmarkStatusQuery times the status query on a store of 1,000
// protected VMs with their enable jobs and a few recovery points each, as
// scale has them: its cost should not grow with the VMs.
func BenchmarkStatusQuery(b *testing.B) {
	log := events.NewMemLog()
	w := newWorld(b, log)
	w.buildFabric()
	const vms = 1000
	var last uint64
	for i := range vms {
		name := fmt.Sprintf("vm%04d", i)
		agg, corr := events.VMAgg(name), "enable-"+name
		w.emit(agg, "create-"+name, events.VMCreatedData{Name: name, Host: "hv01", Site: "primary", Cloud: "gold",
			Disks: []events.DiskSpec{{Name: "disk0", Size: 1 << 30}}})
		w.emit(agg, corr, enableData(name))
		w.emit(agg, corr, events.InitialReplicationStartedData{TotalBytes: 1 << 30})
		w.emit(agg, corr, events.InitialReplicationCompletedData{SentBytes: 1 << 30})
		for p := range 5 {
			last = w.emit(agg, fmt.Sprintf("agent-%d-%d", i, p), events.RecoveryPointCreatedData{ID: fmt.Sprintf("rp-%d", p),
				Time: w.at, Cycle: uint64(p), Epoch: 1})
		}
	}
	s, err := Open(context.Background(), filepath.Join(b.TempDir(), "projections.db"), log, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.WaitFor(ctx, last); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := s.Query(ctx, "status", nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/query")
}
