package replica

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/siterecovery/siterecovery/hostsync/hashtree"
	"github.com/siterecovery/siterecovery/hostsync/sparse"
)

// pointIndex finds a retained point. Callers hold mu.
func (r *Replica) pointIndex(id string) (int, error) {
	for i, p := range r.state.Points {
		if p.ID == id {
			return i, nil
		}
	}
	return 0, fmt.Errorf("%w: %q on vm %s", ErrPointNotFound, id, r.vm)
}

// MaterializePoint writes full (sparse) images of the disks at point id
// into dstDir, as dstDir/<disk>.img, synced, and returns their paths. The
// replica is not changed; applies wait until it is done.
func (r *Replica) MaterializePoint(ctx context.Context, id string, dstDir string) (map[string]string, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		return nil, ErrClosed
	}
	k, err := r.pointIndex(id)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dstDir, 0o755); err != nil {
		return nil, err
	}
	paths := map[string]string{}
	for _, name := range r.order {
		dst := filepath.Join(dstDir, name+".img")
		if err := r.materializeDisk(ctx, name, k, dst); err != nil {
			return nil, fmt.Errorf("materialize %s disk %s: %w", id, name, err)
		}
		paths[name] = dst
	}
	return paths, nil
}

func (r *Replica) materializeDisk(ctx context.Context, name string, k int, dst string) error {
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := sparse.Copy(ctx, f, r.images[name], r.disks[name].Size); err != nil {
		return err
	}
	for j := len(r.state.Points) - 1; j > k; j-- {
		u, err := openUndo(r.undoPath(r.state.Points[j].Undo))
		if err != nil {
			return err
		}
		err = applyUndoTo(f, u, name)
		u.close()
		if err != nil {
			return err
		}
	}
	return f.Sync()
}

func applyUndoTo(f *os.File, u *undoFile, disk string) error {
	for _, rec := range u.recs {
		if rec.disk != disk {
			continue
		}
		if err := copyUndoRec(f, u, rec); err != nil {
			return err
		}
	}
	return nil
}

// RevertTo rewinds the replica's own images to the older point id and
// drops every newer point, durably: a crash part way finishes the revert
// at the next open. The last applied cycle becomes the point's. Refused
// while a test copy uses a point that would be dropped.
func (r *Replica) RevertTo(ctx context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.usable(); err != nil {
		return err
	}
	k, err := r.pointIndex(id)
	if err != nil {
		return err
	}
	for _, p := range r.state.Points[k+1:] {
		if r.pins[p.ID] > 0 {
			return fmt.Errorf("%w: point %s is used by a test copy", ErrState, p.ID)
		}
	}
	if k == len(r.state.Points)-1 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	p := pendingOp{Kind: opRevert, Target: id}
	if err := r.commit(p); err != nil {
		return err
	}
	err = r.stage(StageCommitted)
	if err == nil {
		err = r.finishRevert(p)
	}
	if err != nil {
		r.broken = true
		return err
	}
	r.log.Info().Str("point", id).Msg("replica reverted")
	return nil
}

// finishRevert writes the undo data of the points after the target over
// the images, newest first, then records the target as the latest point.
// It is idempotent: undo data are absolute bytes.
func (r *Replica) finishRevert(p pendingOp) error {
	r.imageWrites++
	k, err := r.pointIndex(p.Target)
	if err != nil {
		return err
	}
	if k == len(r.state.Points)-1 {
		return r.done("")
	}
	var touched []undoRec
	for j := len(r.state.Points) - 1; j > k; j-- {
		recs, err := r.revertOne(r.state.Points[j].Undo)
		if err != nil {
			return err
		}
		touched = append(touched, recs...)
	}
	if err := r.syncImages(StageImagesSynced); err != nil {
		return err
	}
	if err := r.retree(touched, r.state.Gen+1); err != nil {
		return err
	}
	r.checkRoots(r.state.Points[k].Point)
	return r.recordRevert(k)
}

func (r *Replica) revertOne(name string) ([]undoRec, error) {
	u, err := openUndo(r.undoPath(name))
	if err != nil {
		return nil, err
	}
	defer u.close()
	for _, rec := range u.recs {
		if err := copyUndoRec(r.images[rec.disk], u, rec); err != nil {
			return nil, noSpace(StageImageWritten, err)
		}
	}
	return u.recs, r.stage(StageImageWritten)
}

func (r *Replica) recordRevert(k int) error {
	dropped := r.state.Points[k+1:]
	next := r.state
	next.Points = append([]pointRecord(nil), r.state.Points[:k+1]...)
	next.Epoch, next.Seq, next.Gen = next.Points[k].Epoch, next.Points[k].Cycle, r.state.Gen+1
	if err := r.saveStateAs(next); err != nil {
		return &StageError{Stage: StageStateWritten, Err: err}
	}
	for _, d := range dropped {
		r.forgetUndo(d.Undo)
	}
	return r.done(StageStateWritten)
}

// checkRoots logs loudly when the trees after a revert disagree with the
// roots recorded at the point.
func (r *Replica) checkRoots(p Point) {
	if len(r.trees) == 0 || !hashtree.SameHash(p.RootsHash) {
		return // roots of another hash (an older build's point) tell nothing
	}
	for name, want := range p.Roots {
		if got := r.trees[name].Root(); got != want {
			r.log.Error().Str("point", p.ID).Str("disk", name).Str("want", want).Str("got", got).Msg("hash root after revert differs from the point's")
		}
	}
}
