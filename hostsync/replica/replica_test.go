package replica

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/hostsync/cycle"
	"github.com/siterecovery/siterecovery/hostsync/cycle/cycletest"
	"github.com/siterecovery/siterecovery/hostsync/hashtree"
)

var replicaTestTime0 = time.Date(2026, 11, 25, 6, 0, 0, 0, time.UTC)

func replicaTestDiskSpecs() []events.DiskSpec {
	return []events.DiskSpec{{Name: "sda", Size: cycletest.Disks["sda"]}, {Name: "sdb", Size: cycletest.Disks["sdb"]}}
}

// mustOpenReplica opens the replica of web01 in dir; it is closed when the
// test ends.
func mustOpenReplica(tb testing.TB, dir string, opts Options) *Replica {
	tb.Helper()
	r, err := OpenWithOptions(dir, "web01", replicaTestDiskSpecs(), zerolog.Nop(), opts)
	require.NoError(tb, err)
	tb.Cleanup(func() { require.NoError(tb, r.Close()) })
	return r
}

// requireImages checks the replica's image files byte for byte and its
// hash roots against the model.
func requireImages(t *testing.T, r *Replica, want cycletest.Model) {
	t.Helper()
	for name, data := range want {
		got, err := os.ReadFile(r.ImagePath(name))
		require.NoError(t, err)
		require.True(t, bytes.Equal(data, got), "disk %s differs from the model", name)
	}
	roots := r.Roots()
	for name, data := range want {
		tree, err := hashtree.Build(bytes.NewReader(data), int64(len(data)))
		require.NoError(t, err)
		require.Equal(t, tree.Root(), roots[name], "disk %s root", name)
	}
}

// requirePoint materializes point id and checks it against the model.
func requirePoint(t *testing.T, r *Replica, id string, want cycletest.Model) {
	t.Helper()
	paths, err := r.MaterializePoint(context.Background(), id, t.TempDir())
	require.NoError(t, err)
	for name, data := range want {
		got, err := os.ReadFile(paths[name])
		require.NoError(t, err)
		require.True(t, bytes.Equal(data, got), "point %s disk %s differs from the model", id, name)
	}
}

// replicaHistory applies random cycles and remembers the model at every point.
type replicaHistory struct {
	rng   *rand.Rand
	model cycletest.Model
	snaps map[string]cycletest.Model
	clock time.Time
	epoch uint64
	seq   uint64
}

func newReplicaHistory(seed uint64) *replicaHistory {
	return &replicaHistory{rng: rand.New(rand.NewPCG(seed, seed+1)), model: cycletest.NewModel(), snaps: map[string]cycletest.Model{}, clock: replicaTestTime0, epoch: 1}
}

func (h *replicaHistory) next() cycle.Cycle {
	h.clock = h.clock.Add(10 * time.Minute)
	return cycletest.Random(h.rng, "web01", h.epoch, h.seq+1, h.clock)
}

func (h *replicaHistory) applied(c cycle.Cycle, p Point) {
	h.model.Apply(c)
	h.seq = c.Seq
	h.snaps[p.ID] = h.model.Clone()
}

func (h *replicaHistory) applyN(t *testing.T, r *Replica, n int) {
	t.Helper()
	for range n {
		c := h.next()
		p, err := r.Apply(context.Background(), c)
		require.NoError(t, err)
		require.Equal(t, PointID(c.Epoch, c.Seq), p.ID)
		require.True(t, c.ClosedAt.Equal(p.Time), "a point's time is the cycle's close")
		require.Equal(t, c.AppConsistent, p.AppConsistent)
		h.applied(c, p)
	}
	requireImages(t, r, h.model)
}

func TestReplicaApplyMatchesModelAndEveryPointRestores(t *testing.T) {
	t.Parallel()
	r := mustOpenReplica(t, t.TempDir(), Options{})
	h := newReplicaHistory(21)
	h.applyN(t, r, 12)
	points := r.Points()
	require.Len(t, points, 12)
	for _, p := range points {
		requirePoint(t, r, p.ID, h.snaps[p.ID])
		require.Equal(t, p.Roots, rootsOf(t, h.snaps[p.ID]))
	}
	epoch, seq := r.LastApplied()
	require.Equal(t, uint64(1), epoch)
	require.Equal(t, uint64(12), seq)
}

func rootsOf(t *testing.T, m cycletest.Model) map[string]string {
	out := map[string]string{}
	for name, data := range m {
		tree, err := hashtree.Build(bytes.NewReader(data), int64(len(data)))
		require.NoError(t, err)
		out[name] = tree.Root()
	}
	return out
}

func TestReplicaPruneKeepsPolicyPointsRestorable(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := mustOpenReplica(t, dir, Options{})
	h := newReplicaHistory(22)
	h.applyN(t, r, 24) // 4 hours of 10 minute cycles
	before := r.Points()
	now := h.clock.Add(5 * time.Minute)
	policy := RetentionPolicy{Retention: 3 * time.Hour, CopyFrequency: 10 * time.Minute}
	pruned, err := r.Prune(now, policy)
	require.NoError(t, err)
	kept := r.Points()
	require.Len(t, kept, len(before)-len(pruned))
	requireRetention(t, before, kept, now, policy)
	for _, p := range kept {
		requirePoint(t, r, p.ID, h.snaps[p.ID])
	}

	// More cycles, a later prune (merging merged undo data), a reopen.
	h.applyN(t, r, 6)
	now = h.clock.Add(2 * time.Hour)
	_, err = r.Prune(now, policy)
	require.NoError(t, err)
	requireRetention(t, r.Points(), r.Points(), now, policy)
	require.NoError(t, r.Close())
	r = mustOpenReplica(t, dir, Options{})
	requireImages(t, r, h.model)
	for _, p := range r.Points() {
		requirePoint(t, r, p.ID, h.snaps[p.ID])
	}
	requireNoStrayUndo(t, r)
}

// requireRetention checks kept against the policy's rules over before.
func requireRetention(t *testing.T, before, kept []Point, now time.Time, pol RetentionPolicy) {
	t.Helper()
	has := map[string]bool{}
	for _, p := range kept {
		has[p.ID] = true
	}
	require.True(t, has[before[len(before)-1].ID], "latest kept")
	latestOfHour := map[time.Time]string{}
	for _, p := range before {
		if !p.Time.Before(now.Add(-time.Hour)) {
			require.True(t, has[p.ID], "point %s of the last hour kept", p.ID)
		}
		if !p.Time.Before(now.Add(-pol.Retention)) {
			latestOfHour[p.Time.Truncate(time.Hour)] = p.ID
		}
	}
	for _, id := range latestOfHour {
		require.True(t, has[id], "hourly point %s kept", id)
	}
	for _, p := range kept {
		if p.ID == before[len(before)-1].ID || !p.Time.Before(now.Add(-time.Hour)) {
			continue
		}
		require.False(t, p.Time.Before(now.Add(-pol.Retention)), "point %s past retention kept", p.ID)
		require.True(t, latestOfHour[p.Time.Truncate(time.Hour)] == p.ID || p.AppConsistent, "point %s kept for no rule", p.ID)
	}
}

// requireNoStrayUndo: the undo directory holds exactly the points' files.
func requireNoStrayUndo(t *testing.T, r *Replica) {
	t.Helper()
	var want []string
	for _, p := range r.state.Points {
		if p.Undo != "" {
			want = append(want, p.Undo)
		}
	}
	entries, err := os.ReadDir(filepath.Join(r.dir, undoDir))
	require.NoError(t, err)
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	slices.Sort(want)
	require.Equal(t, want, got)
	require.Empty(t, r.state.Points[0].Undo, "the oldest point needs no undo data")
}

func TestReplicaRefusesWrongEpochAndSequence(t *testing.T) {
	t.Parallel()
	r := mustOpenReplica(t, t.TempDir(), Options{})
	h := newReplicaHistory(23)
	h.applyN(t, r, 3)
	ctx := context.Background()
	data := []byte("x")
	bad := []struct {
		name string
		c    cycle.Cycle
		err  error
	}{
		{"older epoch", cycle.Cycle{VM: "web01", Epoch: 0, Seq: 4}, cycle.ErrStaleEpoch},
		{"applied", cycle.Cycle{VM: "web01", Epoch: 1, Seq: 3}, cycle.ErrApplied},
		{"gap", cycle.Cycle{VM: "web01", Epoch: 1, Seq: 5}, cycle.ErrSeqGap},
		{"new epoch not at 1", cycle.Cycle{VM: "web01", Epoch: 2, Seq: 2}, cycle.ErrSeqGap},
		{"other vm", cycle.Cycle{VM: "db01", Epoch: 1, Seq: 4}, cycle.ErrInvalid},
		{"unknown disk", cycle.Cycle{VM: "web01", Epoch: 1, Seq: 4, Extents: []cycle.Extent{{Disk: "sdz", Length: 1, Data: data}}}, cycle.ErrInvalid},
		{"past the end", cycle.Cycle{VM: "web01", Epoch: 1, Seq: 4, Extents: []cycle.Extent{{Disk: "sdb", Offset: cycletest.Disks["sdb"], Length: 1, Data: data}}}, cycle.ErrInvalid},
		{"short data", cycle.Cycle{VM: "web01", Epoch: 1, Seq: 4, Extents: []cycle.Extent{{Disk: "sdb", Length: 2, Data: data}}}, cycle.ErrInvalid},
	}
	for _, tc := range bad {
		_, err := r.Apply(ctx, tc.c)
		require.ErrorIs(t, err, tc.err, tc.name)
		requireImages(t, r, h.model)
		require.Len(t, r.Points(), 3)
	}
	var seqErr *cycle.SeqError
	_, err := r.Apply(ctx, cycle.Cycle{VM: "web01", Epoch: 1, Seq: 9})
	require.ErrorAs(t, err, &seqErr)
	require.Equal(t, uint64(4), seqErr.WantSeq)

	// A newer epoch starts at 1; a fence refuses the epochs below it.
	h.epoch, h.seq = 2, 0
	h.applyN(t, r, 1)
	require.NoError(t, r.Fence(ctx, 3))
	_, err = r.Apply(ctx, h.next())
	require.ErrorIs(t, err, cycle.ErrStaleEpoch)
	requireImages(t, r, h.model)
	requireNoStrayUndo(t, r)
}

func TestReplicaRevertToOlderPoint(t *testing.T) {
	t.Parallel()
	r := mustOpenReplica(t, t.TempDir(), Options{})
	h := newReplicaHistory(24)
	h.applyN(t, r, 8)
	target := r.Points()[3]
	require.NoError(t, r.RevertTo(context.Background(), target.ID))
	requireImages(t, r, h.snaps[target.ID])
	require.Equal(t, target.ID, r.Points()[len(r.Points())-1].ID)
	require.Equal(t, target.Roots, r.Roots())
	_, seq := r.LastApplied()
	require.Equal(t, target.Cycle, seq)
	for _, p := range r.Points() {
		requirePoint(t, r, p.ID, h.snaps[p.ID])
	}
	requireNoStrayUndo(t, r)

	// Replication goes on from the point.
	h.model, h.seq = h.snaps[target.ID].Clone(), target.Cycle
	h.applyN(t, r, 2)
	require.ErrorIs(t, r.RevertTo(context.Background(), "rp-9-9"), ErrPointNotFound)
}

func TestReplicaTestCopyIsCopyOnWrite(t *testing.T) {
	t.Parallel()
	r := mustOpenReplica(t, t.TempDir(), Options{})
	h := newReplicaHistory(25)
	h.applyN(t, r, 5)
	point := r.Points()[1]
	view, err := r.TestCopy(point.ID, t.TempDir())
	require.NoError(t, err)
	want := h.snaps[point.ID].Clone()
	requireView(t, view, want)

	d := view.Disk("sdb")
	require.NoError(t, d.WriteAt([]byte("test failover was here"), 1000, true))
	copy(want["sdb"][1000:], "test failover was here")
	require.NoError(t, d.WriteZeroes(50_000, 70_000, false))
	clear(want["sdb"][50_000:120_000])
	require.NoError(t, d.Flush())
	requireView(t, view, want)
	requireImages(t, r, h.model) // the replica is untouched

	// Replication and pruning go on; the view keeps showing its point.
	h.applyN(t, r, 3)
	requireView(t, view, want)
	_, err = r.Prune(h.clock.Add(48*time.Hour), RetentionPolicy{Retention: time.Hour})
	require.NoError(t, err)
	require.Contains(t, pointIDs(r.Points()), point.ID, "a point under test is never pruned")
	requireView(t, view, want)

	require.NoError(t, view.Remove())
	require.NoError(t, view.Remove())
	_, err = r.Prune(h.clock.Add(48*time.Hour), RetentionPolicy{Retention: time.Hour})
	require.NoError(t, err)
	require.Equal(t, []string{PointID(1, 8)}, pointIDs(r.Points()))
	requireImages(t, r, h.model)
}

func requireView(t *testing.T, v *TestView, want cycletest.Model) {
	t.Helper()
	for name, data := range want {
		d := v.Disk(name)
		require.Equal(t, int64(len(data)), d.Size())
		got := make([]byte, len(data))
		// Read in odd pieces to cross overlay and undo boundaries.
		for off := 0; off < len(got); off += 70_001 {
			end := min(off+70_001, len(got))
			n, err := d.ReadAt(got[off:end], int64(off))
			require.NoError(t, err)
			require.Equal(t, end-off, n)
		}
		require.True(t, bytes.Equal(data, got), "test disk %s differs", name)
	}
}

func pointIDs(ps []Point) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.ID)
	}
	return out
}

// TestReplicaTestCopyReadsDuringApply: a test VM reads its copy while
// cycles are applied and pruned; it always sees its point.
func TestReplicaTestCopyReadsDuringApply(t *testing.T) {
	t.Parallel()
	r := mustOpenReplica(t, t.TempDir(), Options{})
	h := newReplicaHistory(26)
	h.applyN(t, r, 3)
	point := r.Points()[2]
	view, err := r.TestCopy(point.ID, t.TempDir())
	require.NoError(t, err)
	defer view.Remove()
	want := h.snaps[point.ID]
	done := make(chan struct{})
	readErr := make(chan error, 1)
	go func() {
		defer close(readErr)
		buf := make([]byte, 100_000)
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			off := int64(i*37_000) % (cycletest.Disks["sda"] - int64(len(buf)))
			if _, err := view.Disk("sda").ReadAt(buf, off); err != nil {
				readErr <- err
				return
			}
			if !bytes.Equal(buf, want["sda"][off:off+int64(len(buf))]) {
				readErr <- fmt.Errorf("read at %d differs from the point", off)
				return
			}
		}
	}()
	for range 6 {
		h.applyN(t, r, 1)
		_, err := r.Prune(h.clock.Add(30*time.Hour), RetentionPolicy{Retention: time.Hour})
		require.NoError(t, err)
	}
	close(done)
	require.NoError(t, <-readErr)
}

// TestReplicaBigExtentsChunkUndo: a cycle overwriting more than an undo
// chunk keeps the older point restorable.
func TestReplicaBigExtentsChunkUndo(t *testing.T) {
	t.Parallel()
	const size = 3*undoChunk + 12345
	r, err := Open(t.TempDir(), "big", []events.DiskSpec{{Name: "sda", Size: size}}, zerolog.Nop())
	require.NoError(t, err)
	defer r.Close()
	rng := rand.New(rand.NewPCG(61, 62))
	var snaps []cycletest.Model
	model := cycletest.Model{"sda": make([]byte, size)}
	for seq := uint64(1); seq <= 3; seq++ {
		data := make([]byte, size-int64(seq)*1000)
		cycletest.FillRandom(rng, data)
		c := cycle.Cycle{VM: "big", Epoch: 1, Seq: seq, Extents: []cycle.Extent{{Disk: "sda", Offset: int64(seq), Length: int64(len(data)), Data: data}}}
		_, err := r.Apply(context.Background(), c)
		require.NoError(t, err)
		copy(model["sda"][seq:], data)
		snaps = append(snaps, model.Clone())
	}
	for i, p := range r.Points() {
		requirePoint(t, r, p.ID, snaps[i])
	}
}
