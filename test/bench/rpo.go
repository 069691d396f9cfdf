package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/siterecovery/siterecovery/events"
)

// rpoTick is how often each writer of the RPO benchmark writes a batch and
// flushes (a guest that flushes twice a second).
const rpoTick = 500 * time.Millisecond

// benchRPO protects several VMs, writes random 64 KiB blocks to each at a
// steady rate through its NBD export (flushing every tick), and samples the
// RPO of every VM (now minus the time of its newest applied recovery
// point) for the run's duration; the figure is the highest RPO seen.
// Baseline: the copy frequency, the RPO's floor.
func benchRPO(ctx context.Context, e *benchEnv) ([]Figure, error) {
	names := make([]string, e.sizes.rpoVMs)
	for i := range names {
		names[i] = fmt.Sprintf("rpo%02d", i)
		if err := e.createVM(ctx, names[i], e.sizes.rpoDisk); err != nil {
			return nil, err
		}
		if err := e.Enable(ctx, names[i]); err != nil {
			return nil, err
		}
	}
	for _, vm := range names {
		if _, err := e.WaitProtected(ctx, vm, 5*time.Minute); err != nil {
			return nil, err
		}
	}
	load, err := startRPOLoad(ctx, e, names)
	if err != nil {
		return nil, err
	}
	worst, werr := sampleRPO(ctx, e, names, e.sizes.rpoFor)
	written, lerr := load.stop()
	if err := errors.Join(werr, lerr); err != nil {
		return nil, err
	}
	freq := e.sizes.copyFrequency.Seconds()
	f := Figure{Name: "rpo_under_load", Value: worst.rpo.Seconds(), Unit: "s", Baseline: freq,
		BaselineName: "copy frequency s", Ratio: worst.rpo.Seconds() / freq,
		Target: fmt.Sprintf("< %.0f s (value; ratio = value/copy frequency, lower is better)", 2*freq),
		Note: fmt.Sprintf("%d VMs, random 64 KiB writes at %.1f MB/s each asked, %.2f MB/s each done, for %s; worst %s",
			len(names), float64(e.sizes.rpoRate)/1e6, float64(written)/1e6/float64(len(names))/e.sizes.rpoFor.Seconds(),
			e.sizes.rpoFor, worst.vm)}
	f.Meets = worst.rpo.Seconds() < 2*freq
	return []Figure{f}, nil
}

type rpoSample struct {
	vm  string
	rpo time.Duration
}

// sampleRPO polls every VM's newest recovery point for d and returns the
// highest RPO seen.
func sampleRPO(ctx context.Context, e *benchEnv, names []string, d time.Duration) (rpoSample, error) {
	var worst rpoSample
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		for _, name := range names {
			vm, err := e.VM(ctx, name)
			if err != nil {
				return worst, err
			}
			rp, ok := vm.RecoveryPoint("latest")
			if !ok || vm.State != events.Protected {
				return worst, fmt.Errorf("vm %s: %s with %d points under load", name, vm.State, len(vm.RecoveryPoints))
			}
			if rpo := time.Since(rp.Time); rpo > worst.rpo {
				worst = rpoSample{vm: name, rpo: rpo}
			}
		}
		select {
		case <-ctx.Done():
			return worst, ctx.Err()
		case <-time.After(200 * time.Millisecond): // the sampling period
		}
	}
	return worst, nil
}

// rpoLoad is the writers of the RPO benchmark, one per VM.
type rpoLoad struct {
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	written atomic.Int64
	mu      sync.Mutex
	err     error
}

func startRPOLoad(ctx context.Context, e *benchEnv, names []string) (*rpoLoad, error) {
	ctx, cancel := context.WithCancel(ctx)
	l := &rpoLoad{cancel: cancel}
	clients := make([]*benchNBD, len(names))
	for i, vm := range names {
		c, err := e.dialDisk(ctx, vm)
		if err != nil {
			cancel()
			for _, c := range clients[:i] {
				_ = c.Close() // the dial error is the one to report
			}
			return nil, err
		}
		clients[i] = c
	}
	for i, c := range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.fail(errors.Join(l.write(ctx, e.sizes, c, uint64(i)), c.Close()))
		}()
	}
	return l, nil
}

// write writes rate bytes/s to one disk in random blocks, a batch and a
// flush every tick, until ctx ends.
func (l *rpoLoad) write(ctx context.Context, s benchSizes, c *benchNBD, seed uint64) error {
	const block = 64 << 10
	perTick := max(int(float64(s.rpoRate)*rpoTick.Seconds()/block+0.5), 1)
	rng := rand.New(rand.NewPCG(seed, 7))
	data := make([]byte, block)
	fillRandom(data, byte(seed))
	tick := time.NewTicker(rpoTick)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		offs := randomBlocks(rng, s.rpoDisk, block, perTick)
		data[0]++ // every write changes the disk
		if err := c.writes(offs, func(int) []byte { return data }, 8); err != nil {
			return err
		}
		l.written.Add(int64(perTick) * block)
	}
}

func (l *rpoLoad) fail(err error) {
	if err == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.err = errors.Join(l.err, err)
}

// stop ends the writers and returns the bytes written and their errors.
func (l *rpoLoad) stop() (int64, error) {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.written.Load(), l.err
}
