package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/hostsync/hashtree"
	"github.com/siterecovery/siterecovery/test/world"
)

// resyncBlock is the size of the blocks the resync benchmark makes differ.
const resyncBlock = 4 << 10

func (e *benchEnv) resyncDisk() int64 {
	switch e.sizes.name {
	case smokeSizes.name:
		return 8 * mib
	case quickSizes.name:
		return 256 * mib
	}
	return 2 << 30
}

// benchResync measures the bytes a real resync ships when 1% of a disk's
// 4 KiB blocks differ. A VM with a disk of random data is protected; then
// 1% of its replica's 4 KiB blocks, scattered, are overwritten behind the
// agents' backs (a failing disk); one write at the source into a leaf
// holding a damaged block makes the recovery host's per-cycle integrity
// check fail, which raises ResyncRequired (as the corrupted-replica fault
// test does); `vm resync` then compares both sides by block hashes and
// ships the differing blocks. The figure is what both agents published on
// their NATS connections from the command to Protected again: the blocks,
// the hashes exchanged and the framing (and the little that the
// benchmark's other, idle VMs send meanwhile: an upper bound). The replica
// is verified equal to the source after. Baseline: a full copy of the disk.
func benchResync(ctx context.Context, e *benchEnv) ([]Figure, error) {
	const vm = "rs01"
	size := e.resyncDisk()
	if err := protectVMs(ctx, e, []string{vm}, size, 70); err != nil {
		return nil, err
	}
	damaged := randomBlocks(rand.New(rand.NewPCG(7, 13)), size, resyncBlock, int(size/resyncBlock/100))
	if err := damageBlocks(e.replicaImage(vm), damaged); err != nil {
		return nil, err
	}
	if err := requireResync(ctx, e, vm, damaged); err != nil {
		return nil, err
	}
	run, err := resync(ctx, e, vm)
	if err != nil {
		return nil, err
	}
	if err := world.SameFiles(e.sourceImage(vm), e.replicaImage(vm)); err != nil {
		return nil, fmt.Errorf("replica after the resync: %w", err)
	}
	if err := disableVM(ctx, e, vm); err != nil {
		return nil, err
	}
	return []Figure{run.figure(size, len(damaged))}, nil
}

// resyncRun is what one measured resync did.
type resyncRun struct {
	took   time.Duration // command to resync_completed
	sent   int64         // the agent's report: bytes of blocks shipped
	source uint64        // bytes the source agent published meanwhile
	target uint64        // bytes the recovery agent published meanwhile
}

func (r resyncRun) figure(size int64, damaged int) Figure {
	wire := float64(r.source + r.target)
	pct := 100 * wire / float64(size)
	f := Figure{Name: "resync_bytes", Value: pct, Unit: "% of disk", Baseline: 100, BaselineName: "full copy % of disk",
		Ratio: 100 / pct, Target: "value < 3 % (1 % of the blocks differ)", Meets: pct < 3,
		Note: fmt.Sprintf("%d MiB disk of random data, %d scattered 4 KiB blocks (%.2f MiB, %.2f %%) damaged in the replica, plus one source write raising ResyncRequired; "+
			"vm resync to Protected in %s: the agents published %.2f MiB (source %.2f, recovery host %.2f: blocks, hashes, framing, idle VMs), "+
			"the agent reported %.2f MiB of blocks shipped; replica verified equal",
			size/mib, damaged, float64(int64(damaged)*resyncBlock)/mib, float64(int64(damaged)*resyncBlock)*100/float64(size), r.took.Round(time.Millisecond),
			wire/mib, float64(r.source)/mib, float64(r.target)/mib, float64(r.sent)/mib)}
	return f
}

// damageBlocks overwrites the blocks at offs of an image with random data,
// synced, behind the agent's back.
func damageBlocks(path string, offs []int64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	buf := make([]byte, resyncBlock)
	rng := rand.NewChaCha8([32]byte{9})
	for _, off := range offs {
		_, _ = rng.Read(buf) // never fails
		if _, err := f.WriteAt(buf, off); err != nil {
			return errors.Join(fmt.Errorf("damage %s at %d: %w", path, off, err), f.Close())
		}
	}
	if err := f.Sync(); err != nil {
		return errors.Join(err, f.Close())
	}
	return f.Close()
}

// requireResync writes one 4 KiB block at the source into the hash leaf
// of the first damaged block, beside it: the recovery host rehashes that
// leaf from its image when it applies the cycle, finds it differs from
// the source's root, and the VM goes to ResyncRequired.
func requireResync(ctx context.Context, e *benchEnv, vm string, damaged []int64) error {
	leaf := damaged[0] / hashtree.LeafSize * hashtree.LeafSize
	at := int64(-1)
	for off := leaf; off < leaf+hashtree.LeafSize; off += resyncBlock {
		if !slices.Contains(damaged, off) {
			at = off
			break
		}
	}
	if at < 0 {
		return fmt.Errorf("every block of the leaf at %d is damaged", leaf)
	}
	data := make([]byte, resyncBlock)
	fillRandom(data, 17)
	c, err := e.dialDisk(ctx, vm)
	if err != nil {
		return err
	}
	err = c.writes([]int64{at}, func(int) []byte { return data }, 1)
	if err = errors.Join(err, c.Close()); err != nil {
		return err
	}
	_, err = e.WaitVM(ctx, vm, 2*time.Minute, "resync required by the integrity check", func(v events.VM) bool {
		return v.State == events.ResyncRequiredState
	})
	return err
}

// resync runs `vm resync` and measures it until the VM is Protected again.
func resync(ctx context.Context, e *benchEnv, vm string) (resyncRun, error) {
	var run resyncRun
	src, dst := e.Agent(benchSource).Conn(), e.Agent(benchRecovery).Conn()
	src0, dst0 := src.Stats(), dst.Stats()
	start := time.Now()
	if err := e.Command(ctx, "sr.cmd.vm.resync", map[string]any{"vm": vm}); err != nil {
		return run, err
	}
	if _, err := e.WaitVM(ctx, vm, 15*time.Minute, "protected after the resync", func(v events.VM) bool {
		return v.State == events.Protected
	}); err != nil {
		return run, err
	}
	run.source, run.target = published(src, src0), published(dst, dst0)
	recs, err := e.ControlPlane().Log().Load(ctx, events.VMAgg(vm))
	if err != nil {
		return run, err
	}
	for i := len(recs) - 1; i >= 0; i-- {
		if d, ok := recs[i].Data.(events.ResyncCompletedData); ok {
			run.took, run.sent = recs[i].Meta.At.Sub(start), d.SentBytes
			return run, nil
		}
	}
	return run, fmt.Errorf("vm %s: protected again without a resync_completed event", vm)
}

// published is the bytes nc published since it counted before.
func published(nc *nats.Conn, before nats.Statistics) uint64 {
	return nc.Stats().OutBytes - before.OutBytes
}

// disableVM disables the VM and waits until it is Unprotected.
func disableVM(ctx context.Context, e *benchEnv, vm string) error {
	if err := e.Command(ctx, "sr.cmd.vm.disable", map[string]any{"vm": vm}); err != nil {
		return err
	}
	_, err := e.WaitVM(ctx, vm, 5*time.Minute, "unprotected", func(v events.VM) bool {
		return v.State == events.Unprotected
	})
	return err
}
