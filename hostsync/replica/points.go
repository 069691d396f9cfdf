package replica

import (
	"fmt"
	"os"
	"slices"
	"sort"
	"time"

	"github.com/siterecovery/siterecovery/hostsync/cycle"
)

// Point is a recovery point of a replica: the disks as they were when the
// source closed one cycle.
type Point struct {
	ID string `json:"id"`
	// Time is the instant the source closed the cycle (what the point
	// holds), never the time it was applied.
	Time          time.Time `json:"time"`
	AppConsistent bool      `json:"app_consistent"`
	Epoch         uint64    `json:"epoch"`
	Cycle         uint64    `json:"cycle"`
	// Roots are the disks' hash tree roots (hex) at this point.
	Roots map[string]string `json:"roots,omitempty"`
	// RootsHash names the hash of Roots (hashtree.HashName); empty for a
	// point applied by a build before it (SHA-256).
	RootsHash string `json:"roots_hash,omitempty"`
}

// RetentionPolicy says which points Prune keeps: the latest, every point of
// the last hour, the latest point of each hour up to Retention, and the
// app-consistent points within Retention (the latest of each
// AppConsistentEvery window when that is set, else all).
type RetentionPolicy struct {
	Retention          time.Duration
	CopyFrequency      time.Duration
	AppConsistentEvery time.Duration
}

// Points are the retained recovery points, oldest first.
func (r *Replica) Points() []Point {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]Point, len(r.state.Points))
	for i, p := range r.state.Points {
		out[i] = p.Point
	}
	return out
}

// Prune drops the points the policy does not retain (never one a test
// copy uses) and returns their ids. Every retained point stays
// restorable: a dropped point's undo data is merged into its successor's.
// A crash while pruning leaves a consistent set of points.
func (r *Replica) Prune(now time.Time, policy RetentionPolicy) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.usable(); err != nil {
		return nil, err
	}
	keep := retainedPoints(r.pointsLocked(), now, policy)
	var pruned []string
	for i := 0; i < len(r.state.Points); {
		p := r.state.Points[i]
		if keep[p.ID] || r.pins[p.ID] > 0 {
			i++
			continue
		}
		if err := r.dropPoint(i); err != nil {
			return pruned, fmt.Errorf("prune %s: %w", p.ID, err)
		}
		pruned = append(pruned, p.ID)
	}
	if len(pruned) > 0 {
		r.log.Info().Strs("points", pruned).Msg("recovery points pruned")
	}
	return pruned, nil
}

// pointsLocked is Points for a caller holding mu.
func (r *Replica) pointsLocked() []Point {
	out := make([]Point, len(r.state.Points))
	for i, p := range r.state.Points {
		out[i] = p.Point
	}
	return out
}

// retainedPoints decides which points (oldest first) a policy keeps at now.
func retainedPoints(points []Point, now time.Time, pol RetentionPolicy) map[string]bool {
	keep := map[string]bool{}
	if len(points) == 0 {
		return keep
	}
	keep[points[len(points)-1].ID] = true
	hourly := map[time.Time]string{}
	appBuckets := map[time.Time]string{}
	for _, p := range points {
		if !p.Time.Before(now.Add(-time.Hour)) {
			keep[p.ID] = true
		}
		if p.Time.Before(now.Add(-pol.Retention)) {
			continue
		}
		hourly[p.Time.Truncate(time.Hour)] = p.ID
		if !p.AppConsistent {
			continue
		}
		if pol.AppConsistentEvery > 0 {
			appBuckets[p.Time.Truncate(pol.AppConsistentEvery)] = p.ID
		} else {
			keep[p.ID] = true
		}
	}
	for _, id := range hourly {
		keep[id] = true
	}
	for _, id := range appBuckets {
		keep[id] = true
	}
	return keep
}

// dropPoint removes point i (never the latest). The oldest point needs no
// undo data; any other passes its undo data to its successor, whose own
// undo data loses the ranges the dropped one covers.
func (r *Replica) dropPoint(i int) error {
	pts := r.state.Points
	next := r.state
	next.Points = slices.Delete(slices.Clone(pts), i, i+1)
	garbage := []string{pts[i].Undo, pts[i+1].Undo}
	if i == 0 {
		next.Points[0].Undo = ""
	} else {
		name := fmt.Sprintf("%d.undo", r.state.NextUndo)
		if err := r.mergeUndo(pts[i].Undo, pts[i+1].Undo, name); err != nil {
			return err
		}
		next.Points[i].Undo = name
		next.NextUndo++
		if err := r.stage(StagePruneMerged); err != nil {
			os.Remove(r.undoPath(name))
			return err
		}
	}
	if err := r.saveStateAs(next); err != nil {
		return err
	}
	if err := r.stage(StagePruneSaved); err != nil {
		return err
	}
	for _, g := range garbage {
		r.forgetUndo(g)
	}
	return nil
}

// forgetUndo closes and deletes an undo file no point names any more.
func (r *Replica) forgetUndo(name string) {
	if name == "" {
		return
	}
	r.undoMu.Lock()
	if u, ok := r.undos[name]; ok {
		u.close()
		delete(r.undos, name)
	}
	r.undoMu.Unlock()
	if err := os.Remove(r.undoPath(name)); err != nil && !os.IsNotExist(err) {
		r.log.Warn().Err(err).Str("undo", name).Msg("undo file not removed; removed at next open")
	}
}

// cachedUndo returns the open, indexed undo file name, cached for test
// copies' reads. Callers hold mu (for reading at least).
func (r *Replica) cachedUndo(name string) (*undoFile, error) {
	r.undoMu.Lock()
	defer r.undoMu.Unlock()
	if u, ok := r.undos[name]; ok {
		return u, nil
	}
	u, err := openUndo(r.undoPath(name))
	if err != nil {
		return nil, err
	}
	r.undos[name] = u
	return u, nil
}

// mergeUndo writes to dst the undo data from the successor's state back to
// the state before the dropped point: all of older, and of newer what
// older does not cover.
func (r *Replica) mergeUndo(older, newer, dst string) error {
	uo, err := openUndo(r.undoPath(older))
	if err != nil {
		return err
	}
	defer uo.close()
	un, err := openUndo(r.undoPath(newer))
	if err != nil {
		return err
	}
	defer un.close()
	w, err := createUndo(r.undoPath(dst))
	if err != nil {
		return err
	}
	if err := copyRecs(w, uo, uo.recs); err != nil {
		w.abort()
		return err
	}
	if err := copyRecs(w, un, clipRecs(un.recs, uo.recs)); err != nil {
		w.abort()
		return err
	}
	return w.finish()
}

func copyRecs(w *undoWriter, u *undoFile, recs []undoRec) error {
	for _, rec := range recs {
		var data []byte
		if !rec.zero {
			data = make([]byte, rec.length)
			if err := u.read(rec, rec.off, data); err != nil {
				return err
			}
		}
		if err := w.add(rec.disk, rec.off, rec.length, rec.zero, data); err != nil {
			return err
		}
	}
	return nil
}

// clipRecs returns the parts of recs that no record of cover overlaps; a
// part keeps the dataAt of its own bytes.
func clipRecs(recs, cover []undoRec) []undoRec {
	byDisk := map[string][]cycle.Range{}
	for _, c := range cover {
		byDisk[c.disk] = append(byDisk[c.disk], cycle.Range{Offset: c.off, Length: c.length})
	}
	for d := range byDisk {
		byDisk[d] = mergeRanges(byDisk[d])
	}
	var out []undoRec
	for _, rec := range recs {
		for _, part := range subtractRanges(cycle.Range{Offset: rec.off, Length: rec.length}, byDisk[rec.disk]) {
			piece := rec
			piece.off, piece.length = part.Offset, part.Length
			if !rec.zero {
				piece.dataAt = rec.dataAt + part.Offset - rec.off
			}
			out = append(out, piece)
		}
	}
	return out
}

// mergeRanges sorts ranges and merges overlapping or adjacent ones.
func mergeRanges(rs []cycle.Range) []cycle.Range {
	slices.SortFunc(rs, func(a, b cycle.Range) int { return int(min(max(a.Offset-b.Offset, -1), 1)) })
	var out []cycle.Range
	for _, x := range rs {
		if n := len(out); n > 0 && x.Offset <= out[n-1].Offset+out[n-1].Length {
			out[n-1].Length = max(out[n-1].Offset+out[n-1].Length, x.Offset+x.Length) - out[n-1].Offset
			continue
		}
		out = append(out, x)
	}
	return out
}

// subtractRanges returns the parts of x outside the sorted, merged cover.
func subtractRanges(x cycle.Range, cover []cycle.Range) []cycle.Range {
	var out []cycle.Range
	pos, end := x.Offset, x.Offset+x.Length
	first := sort.Search(len(cover), func(i int) bool { return cover[i].Offset+cover[i].Length > pos })
	for _, c := range cover[first:] {
		cEnd := c.Offset + c.Length
		if cEnd <= pos {
			continue
		}
		if c.Offset >= end {
			break
		}
		if c.Offset > pos {
			out = append(out, cycle.Range{Offset: pos, Length: c.Offset - pos})
		}
		pos = max(pos, cEnd)
	}
	if pos < end {
		out = append(out, cycle.Range{Offset: pos, Length: end - pos})
	}
	return out
}
