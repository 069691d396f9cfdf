package replica

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/hostsync/cycle"
	"github.com/siterecovery/siterecovery/hostsync/cycle/cycletest"
)

// errStageInjected is what an injected failure returns.
var errStageInjected = errors.New("injected failure")

// replicaCrashPanic is what an injected crash panics with.
type replicaCrashPanic struct{ stage string }

// stageInjector fails or crashes at the n-th call of one stage.
type stageInjector struct {
	stage string
	nth   int
	seen  int
	crash bool
	err   error
}

func (in *stageInjector) hook(stage string) error {
	if in == nil || stage != in.stage {
		return nil
	}
	in.seen++
	if in.seen != in.nth {
		return nil
	}
	if in.crash {
		panic(replicaCrashPanic{stage})
	}
	return in.err
}

// replicaApplyStages are every hook point of an apply, with how many times each
// is called (once per disk for image-written), and whether the apply is
// durable once it is reached.
var replicaApplyStages = []struct {
	stage   string
	nth     int
	durable bool
}{
	{StageReserved, 1, false},
	{StageUndoWritten, 1, false},
	{StageCommitted, 1, false},
	{StageImageWritten, 1, false},
	{StageImageWritten, 2, false},
	{StageImagesSynced, 1, false},
	{StageTreesSaved, 1, false},
	{StageStateWritten, 1, true},
}

// replicaCrashApply applies c with a crash injected, abandons the replica as a
// killed process would, and reopens it. prepare, when not nil, runs on the
// replica before the apply.
func replicaCrashApply(t *testing.T, dir string, in *stageInjector, c cycle.Cycle, prepare func(*Replica)) *Replica {
	t.Helper()
	r, err := OpenWithOptions(dir, "web01", replicaTestDiskSpecs(), zerolog.Nop(), Options{Hook: in.hook})
	require.NoError(t, err)
	if prepare != nil {
		prepare(r)
	}
	func() {
		defer func() {
			p := recover()
			_, ok := p.(replicaCrashPanic)
			require.True(t, ok, "crash at %s: got %v", in.stage, p)
		}()
		_, err = r.Apply(context.Background(), c)
		t.Fatalf("apply survived the crash at %s: %v", in.stage, err)
	}()
	require.NoError(t, r.closeFiles()) // the process dies: no cleanup runs
	return mustOpenReplica(t, dir, Options{})
}

// TestReplicaCrashAtEveryStage: a crash at any stage of an apply reopens at
// the previous point or (once durable) the new one, bit for bit, with every
// older point restorable, and applying again succeeds; whether or not the
// apply's undo data was prepared as its batches arrived.
func TestReplicaCrashAtEveryStage(t *testing.T) {
	t.Parallel()
	for _, preimaged := range []bool{false, true} {
		for _, st := range replicaApplyStages {
			t.Run(fmt.Sprintf("%s-%d-preimaged=%v", st.stage, st.nth, preimaged), func(t *testing.T) {
				t.Parallel()
				dir := t.TempDir()
				r := mustOpenReplica(t, dir, Options{})
				h := newReplicaHistory(31)
				h.applyN(t, r, 3)
				require.NoError(t, r.Close())

				c := h.next()
				var prepare func(*Replica)
				if preimaged {
					prepare = func(r *Replica) { preimageBatches(t, r, c, 2) }
				}
				r = replicaCrashApply(t, dir, &stageInjector{stage: st.stage, nth: st.nth, crash: true}, c, prepare)
				if st.durable {
					h.applied(c, Point{ID: PointID(c.Epoch, c.Seq)})
				}
				requireImages(t, r, h.model)
				require.Len(t, r.Points(), int(h.seq))
				for _, p := range r.Points() {
					requirePoint(t, r, p.ID, h.snaps[p.ID])
				}
				if !st.durable {
					p, err := r.Apply(context.Background(), c)
					require.NoError(t, err)
					h.applied(c, p)
				}
				h.applyN(t, r, 1)
				requireNoStrayUndo(t, r)
			})
		}
	}
}

// TestReplicaFailureAtEveryStageRollsBack: an error (not a crash) at any
// stage before the apply is durable leaves the previous point in process,
// and a retry succeeds.
func TestReplicaFailureAtEveryStageRollsBack(t *testing.T) {
	t.Parallel()
	for _, st := range replicaApplyStages {
		if st.durable {
			continue
		}
		t.Run(fmt.Sprintf("%s-%d", st.stage, st.nth), func(t *testing.T) {
			t.Parallel()
			in := &stageInjector{nth: st.nth, err: errStageInjected}
			r := mustOpenReplica(t, t.TempDir(), Options{Hook: in.hook})
			h := newReplicaHistory(32)
			h.applyN(t, r, 2)
			in.stage = st.stage
			c := h.next()
			_, err := r.Apply(context.Background(), c)
			require.ErrorIs(t, err, errStageInjected)
			requireImages(t, r, h.model)
			require.Len(t, r.Points(), 2)
			p, err := r.Apply(context.Background(), c)
			require.NoError(t, err)
			h.applied(c, p)
			requireImages(t, r, h.model)
			requireNoStrayUndo(t, r)
		})
	}
}

// TestReplicaFailureAfterDurable: an error once the point is durable is
// reported, the point stays, and the next apply cleans up first.
func TestReplicaFailureAfterDurable(t *testing.T) {
	t.Parallel()
	in := &stageInjector{nth: 1, err: errStageInjected}
	r := mustOpenReplica(t, t.TempDir(), Options{Hook: in.hook})
	h := newReplicaHistory(35)
	h.applyN(t, r, 2)
	in.stage = StageStateWritten
	c := h.next()
	p, err := r.Apply(context.Background(), c)
	require.ErrorIs(t, err, errStageInjected)
	require.Equal(t, PointID(1, 3), p.ID)
	h.applied(c, p)
	requireImages(t, r, h.model)
	_, err = r.Apply(context.Background(), c)
	require.ErrorIs(t, err, cycle.ErrApplied)
	h.applyN(t, r, 1)
	require.NoFileExists(t, filepath.Join(r.dir, pendingFile))
	requireNoStrayUndo(t, r)
}

// TestReplicaNoSpace: a full file system fails the apply as a whole with
// ErrNoSpace; the previous point stays and a later retry succeeds.
func TestReplicaNoSpace(t *testing.T) {
	t.Parallel()
	for _, stage := range []string{StageReserved, StageUndoWritten, StageImageWritten, StageTreesSaved} {
		t.Run(stage, func(t *testing.T) {
			t.Parallel()
			in := &stageInjector{stage: stage, nth: 1, err: syscall.ENOSPC}
			r := mustOpenReplica(t, t.TempDir(), Options{Hook: in.hook})
			h := newReplicaHistory(33)
			in.stage = "" // fill up only later
			h.applyN(t, r, 2)
			in.stage = stage
			c := h.next()
			_, err := r.Apply(context.Background(), c)
			require.ErrorIs(t, err, ErrNoSpace)
			requireImages(t, r, h.model)
			epoch, seq := r.LastApplied()
			require.Equal(t, [2]uint64{1, 2}, [2]uint64{epoch, seq})

			p, err := r.Apply(context.Background(), c) // space freed: in fires once
			require.NoError(t, err)
			h.applied(c, p)
			requireImages(t, r, h.model)
		})
	}
}

// TestReplicaCrashDuringRevert: a revert interrupted at any stage is
// finished at the next open.
func TestReplicaCrashDuringRevert(t *testing.T) {
	t.Parallel()
	stages := []struct {
		stage string
		nth   int
	}{{StageCommitted, 1}, {StageImageWritten, 1}, {StageImageWritten, 2}, {StageImagesSynced, 1}, {StageStateWritten, 1}}
	for _, st := range stages {
		t.Run(fmt.Sprintf("%s-%d", st.stage, st.nth), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			in := &stageInjector{}
			r, err := OpenWithOptions(dir, "web01", replicaTestDiskSpecs(), zerolog.Nop(), Options{Hook: in.hook})
			require.NoError(t, err)
			h := newReplicaHistory(34)
			h.applyN(t, r, 5)
			target := r.Points()[1]
			*in = stageInjector{stage: st.stage, nth: st.nth, crash: true}
			func() {
				defer func() { require.IsType(t, replicaCrashPanic{}, recover()) }()
				_ = r.RevertTo(context.Background(), target.ID)
				t.Fatal("revert survived the crash")
			}()
			require.NoError(t, r.closeFiles())
			r = mustOpenReplica(t, dir, Options{})
			requireImages(t, r, h.snaps[target.ID])
			require.Equal(t, []string{PointID(1, 1), target.ID}, pointIDs(r.Points()))
			requireNoStrayUndo(t, r)
		})
	}
}

// TestReplicaCrashDuringPrune: a crash while a point is dropped leaves
// the points before or after the drop, every one restorable.
func TestReplicaCrashDuringPrune(t *testing.T) {
	t.Parallel()
	for _, stage := range []string{StagePruneMerged, StagePruneSaved} {
		for _, nth := range []int{1, 2} {
			if stage == StagePruneMerged && nth > 1 {
				continue // with this seed the prune merges once (app-consistent points stay)
			}
			t.Run(fmt.Sprintf("%s-%d", stage, nth), func(t *testing.T) {
				t.Parallel()
				dir := t.TempDir()
				in := &stageInjector{}
				r, err := OpenWithOptions(dir, "web01", replicaTestDiskSpecs(), zerolog.Nop(), Options{Hook: in.hook})
				require.NoError(t, err)
				h := newReplicaHistory(36)
				h.applyN(t, r, 8)
				*in = stageInjector{stage: stage, nth: nth, crash: true}
				func() {
					defer func() { require.IsType(t, replicaCrashPanic{}, recover()) }()
					// Keeps the first point (its hour) and the latest:
					// the ones between are merged away.
					_, _ = r.Prune(h.clock.Add(90*time.Minute), RetentionPolicy{Retention: 2 * time.Hour})
					t.Fatal("prune survived the crash")
				}()
				require.NoError(t, r.closeFiles())
				r = mustOpenReplica(t, dir, Options{})
				requireImages(t, r, h.model)
				for _, p := range r.Points() {
					requirePoint(t, r, p.ID, h.snaps[p.ID])
				}
				requireNoStrayUndo(t, r)
				_, err = r.Prune(h.clock.Add(90*time.Minute), RetentionPolicy{Retention: 2 * time.Hour})
				require.NoError(t, err)
				for _, p := range r.Points() {
					requirePoint(t, r, p.ID, h.snaps[p.ID])
				}
			})
		}
	}
}

const replicaKillChildEnv = "SR_REPLICA_KILL_CHILD_DIR"

// replicaKillCycle is cycle seq of the kill -9 test, the same in both processes.
func replicaKillCycle(seq uint64) cycle.Cycle {
	rng := rand.New(rand.NewPCG(77, seq))
	return cycletest.Random(rng, "web01", 1, seq, replicaTestTime0.Add(time.Duration(seq)*time.Minute))
}

// TestReplicaKillChild is the process TestReplicaKill9 kills: it applies
// cycles until it dies.
func TestReplicaKillChild(t *testing.T) {
	dir := os.Getenv(replicaKillChildEnv)
	if dir == "" {
		t.Skip("helper process of TestReplicaKill9")
	}
	r, err := Open(dir, "web01", replicaTestDiskSpecs(), zerolog.Nop())
	require.NoError(t, err)
	_, seq := r.LastApplied()
	for s := seq + 1; ; s++ {
		_, err := r.Apply(context.Background(), replicaKillCycle(s))
		require.NoError(t, err)
		fmt.Printf("applied %d\n", s)
	}
}

// TestReplicaKill9: a real process applying cycles is killed with SIGKILL
// at random instants; each reopen is at its last applied point, bit for
// bit, and every retained point restores.
func TestReplicaKill9(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("spawns processes")
	}
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	for round := range 6 {
		extra := time.Duration(rng.IntN(60)) * time.Millisecond
		replicaKillAfterApplies(t, dir, round, extra)
		_, pendErr := os.Stat(filepath.Join(dir, pendingFile))
		r, err := Open(dir, "web01", replicaTestDiskSpecs(), zerolog.Nop())
		require.NoError(t, err)
		_, seq := r.LastApplied()
		t.Logf("round %d: killed after %s mid-apply=%v, reopened at cycle %d", round, extra, pendErr == nil, seq)
		model, snaps := cycletest.NewModel(), map[string]cycletest.Model{}
		for s := uint64(1); s <= seq; s++ {
			c := replicaKillCycle(s)
			model.Apply(c)
			snaps[PointID(1, s)] = model.Clone()
		}
		requireImages(t, r, model)
		for _, p := range r.Points() {
			requirePoint(t, r, p.ID, snaps[p.ID])
		}
		requireNoStrayUndo(t, r)
		require.NoError(t, r.Close())
	}
}

// replicaKillAfterApplies starts the child, waits for it to apply a cycle, lets it
// run a random while longer (so the kill lands anywhere in an apply), and
// kills it with SIGKILL.
func replicaKillAfterApplies(t *testing.T, dir string, round int, extra time.Duration) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestReplicaKillChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), replicaKillChildEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	applied := make(chan int, 1)
	go func() {
		sc := bufio.NewScanner(out)
		n := 0
		for sc.Scan() {
			if _, err := strconv.Atoi(string(sc.Bytes()[len("applied "):])); err == nil {
				n++
				select {
				case applied <- n:
				default:
				}
			}
		}
		close(applied)
	}()
	select {
	case _, ok := <-applied:
		require.True(t, ok, "round %d: child exited before applying", round)
	case <-time.After(20 * time.Second):
		t.Fatalf("round %d: child applied nothing in 20s", round)
	}
	time.Sleep(extra) // where the kill lands, not a wait for a condition
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()
}
