package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// nbdPattern is one write pattern of the NBD benchmark.
type nbdPattern struct {
	name   string
	block  int64
	total  int64
	random bool
}

// nbdRounds alternates the tracked export and qemu-nbd this many times per
// pattern, so that a burst of load from elsewhere on the machine hits both.
const nbdRounds = 3

// benchNBDWrites measures writes through the agent's NBD export of a protected
// VM (tracked, shipped and applied while it runs) against qemu-nbd serving
// a plain raw file of the same size, same client, same pattern, 16
// requests in flight, each pass ending with a flush.
func benchNBDWrites(ctx context.Context, e *benchEnv) ([]Figure, error) {
	const vm = "nbd01"
	if err := e.createVM(ctx, vm, e.sizes.nbdDisk); err != nil {
		return nil, err
	}
	if err := e.Enable(ctx, vm); err != nil {
		return nil, err
	}
	if _, err := e.WaitProtected(ctx, vm, 5*time.Minute); err != nil {
		return nil, err
	}
	tracked, err := e.dialDisk(ctx, vm)
	if err != nil {
		return nil, err
	}
	defer tracked.Close()
	plain, stop, perr := startQemuNBD(ctx, e, e.sizes.nbdDisk)
	if perr == nil {
		defer stop()
	}
	var figs []Figure
	for _, p := range []nbdPattern{
		{"nbd_write_seq_1MiB", 1 << 20, e.sizes.nbdSeq, false},
		{"nbd_write_rand_4KiB", 4 << 10, e.sizes.nbdRand, true},
	} {
		f, err := nbdFigure(e, p, tracked, plain, perr)
		if err != nil {
			return figs, err
		}
		figs = append(figs, f)
	}
	return figs, nil
}

func nbdFigure(e *benchEnv, p nbdPattern, tracked, plain *benchNBD, plainErr error) (Figure, error) {
	rounds := nbdRounds
	if e.cfg.Smoke {
		rounds = 1
	}
	data := make([]byte, p.block)
	fillRandom(data, 9)
	block := func(int) []byte { return data }
	rng := rand.New(rand.NewPCG(11, 12))
	var tt, pt time.Duration
	for range rounds {
		offs := nbdOffsets(rng, p, e.sizes.nbdDisk)
		d, err := timed(func() error { return tracked.writes(offs, block, 16) })
		if err != nil {
			return Figure{}, fmt.Errorf("tracked export: %w", err)
		}
		tt += d
		if plain != nil {
			d, err := timed(func() error { return plain.writes(offs, block, 16) })
			if err != nil {
				return Figure{}, fmt.Errorf("qemu-nbd: %w", err)
			}
			pt += d
		}
	}
	mb := float64(p.total) * float64(rounds) / mib
	f := Figure{Name: p.name, Value: mb / tt.Seconds(), Unit: "MiB/s", BaselineName: "qemu-nbd MiB/s",
		Target: "ratio >= 0.7", Note: fmt.Sprintf("%s MiB per pass, %d passes, 16 in flight, flush per pass", num(float64(p.total)/mib), rounds)}
	if plain == nil {
		f.Note += "; no baseline: " + plainErr.Error()
		return f, nil
	}
	f.Baseline = mb / pt.Seconds()
	f.Ratio = f.Value / f.Baseline
	f.Meets = f.Ratio >= 0.7
	return f, nil
}

func nbdOffsets(rng *rand.Rand, p nbdPattern, disk int64) []int64 {
	offs := make([]int64, p.total/p.block)
	for i := range offs {
		if p.random {
			offs[i] = rng.Int64N(disk/p.block) * p.block
		} else {
			offs[i] = int64(i) * p.block % disk
		}
	}
	return offs
}

// startQemuNBD serves a plain sparse raw file of size with qemu-nbd and
// connects to it; stop ends the client and the server.
func startQemuNBD(ctx context.Context, e *benchEnv, size int64) (*benchNBD, func(), error) {
	if _, err := exec.LookPath("qemu-nbd"); err != nil {
		return nil, nil, errors.New("qemu-nbd is not installed (apt-get install -y qemu-utils)")
	}
	dir, err := e.scratch("nbd")
	if err != nil {
		return nil, nil, err
	}
	img, sock := filepath.Join(dir, "plain.img"), filepath.Join(dir, "q.sock")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		return nil, nil, err
	}
	if err := os.Truncate(img, size); err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	cmd := exec.CommandContext(ctx, "qemu-nbd", "-f", "raw", "-k", sock, "-x", "disk0", "-t", img)
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, nil, fmt.Errorf("qemu-nbd: %w", err)
	}
	stop := func() {
		cancel()
		_ = cmd.Wait() // killed by cancel: an error exit status is expected
	}
	c, err := dialBenchNBDWait(ctx, sock, "disk0", 10*time.Second)
	if err != nil {
		stop()
		return nil, nil, fmt.Errorf("qemu-nbd: %w", err)
	}
	return c, func() { _ = c.Close(); stop() }, nil
}
