package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/test/world"
)

const mib = 1 << 20

// benchIR measures initial replication of a disk of random data (nothing
// to skip, nothing to compress): from enable until the VM is Protected with
// its first recovery point applied on the recovery host, then checks that
// the replica equals the source byte for byte. Baseline: `cp` + `sync` of
// the same file on the same machine. The note gives the transport's
// ceiling too (rawTransport).
func benchIR(ctx context.Context, e *benchEnv) ([]Figure, error) {
	const vm = "ir01"
	size := e.sizes.irDisk
	if err := writeRandomFile(e.sourceImage(vm), size, 1); err != nil {
		return nil, err
	}
	if err := e.createVM(ctx, vm, size); err != nil {
		return nil, err
	}
	start := time.Now()
	if err := e.Enable(ctx, vm); err != nil {
		return nil, err
	}
	if _, err := e.WaitProtected(ctx, vm, 15*time.Minute); err != nil {
		return nil, err
	}
	took := time.Since(start)
	if err := world.SameFiles(e.sourceImage(vm), e.replicaImage(vm)); err != nil {
		return nil, fmt.Errorf("replica after initial replication: %w", err)
	}
	base, bases, err := cpSyncMedian(ctx, e, "ir", e.sourceImage(vm))
	if err != nil {
		return nil, err
	}
	raw, err := rawTransport(ctx, e, size)
	if err != nil {
		return nil, err
	}
	mb := float64(size) / mib
	f := Figure{Name: "initial_replication", Value: mb / took.Seconds(), Unit: "MiB/s",
		Baseline: mb / base.Seconds(), BaselineName: "cp+sync MiB/s", Target: "ratio >= 0.5",
		Note: fmt.Sprintf("%d MiB of random data, enable to first recovery point %s; cp+sync %s (median of %s); replica verified equal; "+
			"the transport's ceiling, raw JetStream publish + consume of the same bytes in 1 MiB messages on the same server: %.1f MiB/s (IR is %.2f of it)",
			size/mib, took.Round(time.Millisecond), base.Round(time.Millisecond), roundedAll(bases), mb/raw.Seconds(), raw.Seconds()/took.Seconds())}
	f.Ratio = f.Value / f.Baseline
	f.Meets = f.Ratio >= 0.5
	return []Figure{f}, nil
}

// cpSync copies src into the benchmark's scratch directory with cp, then
// syncs the copy, and returns how long both took; the copy is removed.
func cpSync(ctx context.Context, e *benchEnv, name, src string) (time.Duration, error) {
	dir, err := e.scratch(name)
	if err != nil {
		return 0, err
	}
	dst := filepath.Join(dir, "copy.img")
	defer os.Remove(dst)
	return timed(func() error {
		if err := runTool(ctx, "cp", src, dst); err != nil {
			return err
		}
		return runTool(ctx, "sync", dst)
	})
}

// cpSyncMedian is the median of cpSyncRuns cpSync runs (one with --smoke):
// one sync of a big file swings with the disk's other writeback.
func cpSyncMedian(ctx context.Context, e *benchEnv, name, src string) (time.Duration, []time.Duration, error) {
	runs := cpSyncRuns
	if e.cfg.Smoke {
		runs = 1
	}
	var all []time.Duration
	for range runs {
		d, err := cpSync(ctx, e, name, src)
		if err != nil {
			return 0, nil, err
		}
		all = append(all, d)
	}
	slices.Sort(all)
	return all[len(all)/2], all, nil
}

// cpSyncRuns is how many times the initial replication's baseline runs.
const cpSyncRuns = 3

// roundedAll lists durations to the millisecond.
func roundedAll(ds []time.Duration) string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond).String()
	}
	return strings.Join(out, ", ")
}

// benchDelta measures delta cycles with 1% of the disk changed in random
// 64 KiB blocks written through NBD: from the instant the source closed
// the cycle to the instant the control plane recorded its recovery point
// (shipped, applied whole and reported), and checks the replica equals
// the source after each. Baseline: `rsync --inplace --no-whole-file` of
// the same change set between two files (the disk after the change onto a
// copy of it before the change). The figure is the median of deltaRuns
// rounds (one with --smoke), each with its own blocks and bytes; the
// baseline is rsync's median.
func benchDelta(ctx context.Context, e *benchEnv) ([]Figure, error) {
	const vm = "delta01"
	size := e.sizes.deltaDisk
	if err := writeRandomFile(e.sourceImage(vm), size, 2); err != nil {
		return nil, err
	}
	if err := e.createVM(ctx, vm, size); err != nil {
		return nil, err
	}
	if err := e.Enable(ctx, vm); err != nil {
		return nil, err
	}
	if _, err := e.WaitProtected(ctx, vm, 15*time.Minute); err != nil {
		return nil, err
	}
	rounds := deltaRounds
	if e.sizes.name == smokeSizes.name {
		rounds = 1
	}
	var runs []deltaRun
	var rsyncs, floors []time.Duration
	for i := range rounds {
		run, rsync, err := deltaRound(ctx, e, vm, i)
		if err != nil {
			return nil, fmt.Errorf("delta round %d: %w", i+1, err)
		}
		runs, rsyncs, floors = append(runs, run), append(rsyncs, rsync), append(floors, run.floor())
	}
	slices.SortFunc(runs, func(a, b deltaRun) int { return cmp.Compare(a.took, b.took) })
	slices.Sort(rsyncs)
	slices.Sort(floors)
	cycle, rsync := runs[len(runs)/2], rsyncs[len(rsyncs)/2]
	note := cycle.note(size)
	if rounds > 1 {
		note = fmt.Sprintf("median of %d rounds (cycles %s to %s, rsync %s to %s); %s", rounds,
			runs[0].took.Round(time.Millisecond), runs[len(runs)-1].took.Round(time.Millisecond),
			rsyncs[0].Round(time.Millisecond), rsyncs[len(rsyncs)-1].Round(time.Millisecond), note)
	}
	floor := floors[len(floors)/2]
	note += fmt.Sprintf("; the floor of the same change set on this machine (median): through JetStream (raw publish + consume) "+
		"and written in place and synced, one after the other: %s, rsync/floor %.1f; the cycle is %.1f times the floor",
		floor.Round(time.Millisecond), rsync.Seconds()/floor.Seconds(), cycle.took.Seconds()/floor.Seconds())
	f := Figure{Name: "delta_cycle", Value: cycle.took.Seconds(), Unit: "s", Baseline: rsync.Seconds(),
		BaselineName: "rsync --inplace --no-whole-file s", Ratio: rsync.Seconds() / cycle.took.Seconds(),
		Target: "ratio (rsync/cycle) >= 20", Note: note}
	f.Meets = f.Ratio >= 20
	return []Figure{f}, nil
}

// deltaRounds is how many delta cycles benchDelta measures.
const deltaRounds = 3

// deltaRound copies the disk aside, measures one delta cycle (round i's
// blocks and bytes), checks the replica, and times rsync bringing the
// copy up to date.
func deltaRound(ctx context.Context, e *benchEnv, vm string, i int) (deltaRun, time.Duration, error) {
	dir, err := e.scratch("delta")
	if err != nil {
		return deltaRun{}, 0, err
	}
	before := filepath.Join(dir, "before.img")
	defer os.Remove(before)
	if err := runTool(ctx, "cp", e.sourceImage(vm), before); err != nil {
		return deltaRun{}, 0, err
	}
	// The copy's writeback must not compete with the cycle's fsyncs.
	if err := runTool(ctx, "sync", before); err != nil {
		return deltaRun{}, 0, err
	}
	cycle, err := deltaCycle(ctx, e, vm, uint64(i))
	if err != nil {
		return deltaRun{}, 0, err
	}
	if err := world.SameFiles(e.sourceImage(vm), e.replicaImage(vm)); err != nil {
		return deltaRun{}, 0, fmt.Errorf("replica after the delta cycle: %w", err)
	}
	rsync, err := timed(func() error {
		return runTool(ctx, "rsync", "--inplace", "--no-whole-file", "--ignore-times", e.sourceImage(vm), before)
	})
	if err != nil {
		return deltaRun{}, 0, err
	}
	if err := world.SameFiles(e.sourceImage(vm), before); err != nil {
		return deltaRun{}, 0, fmt.Errorf("rsync baseline did not reproduce the disk: %w", err)
	}
	if cycle.transport, err = rawTransport(ctx, e, int64(len(cycle.data))); err != nil {
		return deltaRun{}, 0, err
	}
	if cycle.write, err = timed(func() error { return writeBlocksSynced(before, cycle.offs, cycle.data, cycle.block) }); err != nil {
		return deltaRun{}, 0, err
	}
	return cycle, rsync, nil
}

// writeBlocksSynced writes the change set's blocks in place into path and
// syncs it: the least a recovery host does with a cycle.
func writeBlocksSynced(path string, offs []int64, data []byte, block int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	for i, off := range offs {
		if _, err := f.WriteAt(data[int64(i)*block:int64(i+1)*block], off); err != nil {
			f.Close()
			return err
		}
	}
	return errors.Join(f.Sync(), f.Close())
}

// deltaRun is what one measured delta cycle did.
type deltaRun struct {
	took   time.Duration
	blocks int
	block  int64
	bytes  int64 // the recovery point's shipped bytes
	cycles int   // cycles the change set spanned
	// The change set, and the floor measured with it: its bytes through
	// JetStream, and written in place and synced.
	offs             []int64
	data             []byte
	transport, write time.Duration
}

func (d deltaRun) floor() time.Duration { return d.transport + d.write }

func (d deltaRun) note(size int64) string {
	n := fmt.Sprintf("%d blocks of %d KiB (%.1f MiB) of a %d MiB disk; the point carried %.1f MiB; replica verified equal",
		d.blocks, d.block>>10, float64(int64(d.blocks)*d.block)/mib, size/mib, float64(d.bytes)/mib)
	if d.cycles > 1 {
		n += fmt.Sprintf("; the writes spanned %d cycles, the time is the last one's", d.cycles)
	}
	return n
}

// deltaCycle writes 1% of the disk right after a cycle closed and measures
// the cycle that holds the writes.
func deltaCycle(ctx context.Context, e *benchEnv, vm string, round uint64) (deltaRun, error) {
	run := deltaRun{block: e.sizes.deltaBlock}
	size := e.sizes.deltaDisk
	run.blocks = max(int(size/100/run.block), 1)
	offs := randomBlocks(rand.New(rand.NewPCG(3, 4+round)), size, run.block, run.blocks)
	data := make([]byte, int64(run.blocks)*run.block)
	fillRandom(data, byte(5+round))
	run.offs, run.data = offs, data
	c, err := e.dialDisk(ctx, vm)
	if err != nil {
		return run, err
	}
	defer c.Close()
	last, err := e.VM(ctx, vm)
	if err != nil {
		return run, err
	}
	prev, _ := last.RecoveryPoint("latest")
	if _, err := e.WaitVM(ctx, vm, time.Minute, "a new recovery point", func(v events.VM) bool {
		rp, ok := v.RecoveryPoint("latest")
		return ok && rp.Time.After(prev.Time)
	}); err != nil {
		return run, err
	}
	writeStart := time.Now()
	err = c.writes(offs, func(i int) []byte { return data[int64(i)*run.block : int64(i+1)*run.block] }, 16)
	if err != nil {
		return run, fmt.Errorf("delta writes: %w", err)
	}
	writeEnd := time.Now()
	if _, err := e.WaitVM(ctx, vm, 10*time.Minute, "the recovery point of the changes", func(v events.VM) bool {
		rp, ok := v.RecoveryPoint("latest")
		return ok && rp.Time.After(writeEnd)
	}); err != nil {
		return run, err
	}
	return run, run.measure(ctx, e, vm, writeStart, writeEnd)
}

// measure finds the recovery point events of the cycles closed after
// writeStart and takes the first one closed after writeEnd.
func (d *deltaRun) measure(ctx context.Context, e *benchEnv, vm string, writeStart, writeEnd time.Time) error {
	recs, err := e.ControlPlane().Log().Load(ctx, events.VMAgg(vm))
	if err != nil {
		return err
	}
	for _, r := range recs {
		rp, ok := r.Data.(events.RecoveryPointCreatedData)
		if !ok || !rp.Time.After(writeStart) {
			continue
		}
		d.cycles++
		d.bytes += rp.Bytes
		if rp.Time.After(writeEnd) {
			d.took = r.Meta.At.Sub(rp.Time)
			return nil
		}
	}
	return fmt.Errorf("vm %s: no recovery point event closed after %s", vm, writeEnd.Format(time.StampMilli))
}

// writeRandomFile writes size random bytes at path, synced.
func writeRandomFile(path string, size int64, seed byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	buf := make([]byte, 4*mib)
	rng := rand.NewChaCha8([32]byte{seed})
	for done := int64(0); done < size; {
		n := min(int64(len(buf)), size-done)
		_, _ = rng.Read(buf[:n]) // never fails
		if _, err := f.Write(buf[:n]); err != nil {
			return errors.Join(fmt.Errorf("write %s: %w", path, err), f.Close())
		}
		done += n
	}
	if err := f.Sync(); err != nil {
		return errors.Join(fmt.Errorf("sync %s: %w", path, err), f.Close())
	}
	return f.Close()
}

func fillRandom(b []byte, seed byte) {
	rng := rand.NewChaCha8([32]byte{seed})
	_, _ = rng.Read(b) // never fails
}

// randomBlocks picks n distinct block-aligned offsets of a disk of size.
func randomBlocks(rng *rand.Rand, size, block int64, n int) []int64 {
	total := size / block
	n = min(n, int(total))
	seen := make(map[int64]bool, n)
	offs := make([]int64, 0, n)
	for len(offs) < n {
		b := rng.Int64N(total)
		if !seen[b] {
			seen[b] = true
			offs = append(offs, b*block)
		}
	}
	return offs
}
