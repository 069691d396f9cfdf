package replica

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/siterecovery/siterecovery/hostsync/cycle"
	"github.com/siterecovery/siterecovery/hostsync/hashtree"
	"github.com/siterecovery/siterecovery/hostsync/sparse"
)

// PointID names the recovery point of a cycle.
func PointID(epoch, seq uint64) string { return fmt.Sprintf("rp-%d-%d", epoch, seq) }

// Apply applies a whole cycle on top of the latest point, or nothing: a
// crash at any instant leaves the replica at the previous point or at the
// new one, bit for bit. The cycle must be the next of the epoch (last + 1),
// or cycle 1 of a newer epoch; anything else is refused with a cycle.SeqError and
// changes nothing. A full file system fails with ErrNoSpace and leaves the
// previous point. It returns the new recovery point.
func (r *Replica) Apply(ctx context.Context, c cycle.Cycle) (Point, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.usable(); err != nil {
		return Point{}, err
	}
	if err := r.checkCycle(c); err != nil {
		return Point{}, err
	}
	plans := r.planTrees(c.Extents)
	defer plans.wait()
	p := Point{ID: PointID(c.Epoch, c.Seq), Time: c.ClosedAt, AppConsistent: c.AppConsistent, Epoch: c.Epoch, Cycle: c.Seq}
	pend := pendingOp{Kind: opApply, Point: p, Undo: fmt.Sprintf("%d.undo", r.state.NextUndo)}
	if err := r.prepareApply(ctx, c, pend.Undo); err != nil {
		return Point{}, err
	}
	if err := r.commit(pend); err != nil {
		os.Remove(r.undoPath(pend.Undo))
		return Point{}, err
	}
	err := r.stage(StageCommitted)
	if err == nil {
		p, err = r.finishApply(c, pend, plans)
	}
	if err == nil {
		r.log.Debug().Str("point", p.ID).Int("extents", len(c.Extents)).Msg("cycle applied")
		return p, nil
	}
	if errors.Is(err, errDurable) {
		r.broken = true
		return p, err
	}
	if rbErr := r.rollback(pend); rbErr != nil {
		r.broken = true
		return Point{}, errors.Join(asNoSpace(err), fmt.Errorf("rollback: %w", rbErr))
	}
	return Point{}, asNoSpace(err)
}

// asNoSpace makes any ENOSPC in err match ErrNoSpace.
func asNoSpace(err error) error {
	if errors.Is(err, syscall.ENOSPC) && !errors.Is(err, ErrNoSpace) {
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
	}
	return err
}

// errDurable marks a failure after the operation became durable.
var errDurable = errors.New("operation durable, cleanup failed")

func (r *Replica) checkCycle(c cycle.Cycle) error {
	if c.VM != r.vm {
		return fmt.Errorf("%w: cycle of vm %q on replica of %q", cycle.ErrInvalid, c.VM, r.vm)
	}
	if err := r.checkSeq(c.Epoch, c.Seq); err != nil {
		return err
	}
	for _, e := range c.Extents {
		if err := r.checkExtent(e); err != nil {
			return err
		}
	}
	return nil
}

// checkExtent checks that e is well formed and lies within its disk.
func (r *Replica) checkExtent(e cycle.Extent) error {
	d, ok := r.disks[e.Disk]
	if !ok {
		return fmt.Errorf("%w: unknown disk %q", cycle.ErrInvalid, e.Disk)
	}
	if err := cycle.CheckExtent(e); err != nil {
		return err
	}
	if e.End() > d.Size {
		return fmt.Errorf("%w: extent %s@%d+%d past the disk's %d bytes", cycle.ErrInvalid, e.Disk, e.Offset, e.Length, d.Size)
	}
	return nil
}

func (r *Replica) checkSeq(epoch, seq uint64) error {
	st := r.state
	err := &cycle.SeqError{VM: r.vm, WantEpoch: max(st.Epoch, st.Fence), GotEpoch: epoch, WantSeq: st.Seq + 1, GotSeq: seq}
	switch {
	case epoch < st.Fence || epoch < st.Epoch:
		err.Err = cycle.ErrStaleEpoch
	case epoch > st.Epoch && seq != 1:
		err.WantSeq = 1
		err.Err = cycle.ErrSeqGap
	case epoch > st.Epoch:
		return nil
	case seq <= st.Seq:
		err.Err = cycle.ErrApplied
	case seq > st.Seq+1:
		err.Err = cycle.ErrSeqGap
	default:
		return nil
	}
	return err
}

// prepareApply reserves the image blocks the cycle writes and saves the
// undo file; it changes no image content.
func (r *Replica) prepareApply(ctx context.Context, c cycle.Cycle, undo string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, e := range c.Extents {
		if e.Zero {
			continue
		}
		if err := imageReserve(r.images[e.Disk], e.Offset, e.Length); err != nil {
			return noSpace(StageReserved, err)
		}
	}
	if err := r.stage(StageReserved); err != nil {
		return noSpace(StageReserved, err)
	}
	prepared, err := r.takePrep(c, undo)
	if err == nil && !prepared {
		err = r.writeUndo(c, undo)
	}
	if err != nil {
		os.Remove(r.undoPath(undo))
		return noSpace(StageUndoWritten, err)
	}
	if err := r.stage(StageUndoWritten); err != nil {
		os.Remove(r.undoPath(undo))
		return noSpace(StageUndoWritten, err)
	}
	return ctx.Err()
}

// writeUndo saves the images' current bytes of every range the cycle
// writes, all read before anything is written.
func (r *Replica) writeUndo(c cycle.Cycle, name string) error {
	w, err := createUndo(r.undoPath(name))
	if err != nil {
		return err
	}
	for _, e := range c.Extents {
		if err := preImage(w, r.images[e.Disk], e); err != nil {
			w.abort()
			return err
		}
	}
	return w.finish()
}

// preImage records the current bytes of e's range: holes as zero records,
// data in records of at most undoChunk bytes.
func preImage(w *undoWriter, f *os.File, e cycle.Extent) error {
	for _, reg := range sparse.Regions(f, e.Offset, e.End()) {
		if !reg.Data {
			if err := w.add(e.Disk, reg.Offset, reg.Length, true, nil); err != nil {
				return err
			}
			continue
		}
		buf := make([]byte, min(reg.Length, undoChunk))
		for off := reg.Offset; off < reg.Offset+reg.Length; {
			n := min(int64(len(buf)), reg.Offset+reg.Length-off)
			if _, err := f.ReadAt(buf[:n], off); err != nil {
				return err
			}
			if err := w.add(e.Disk, off, n, false, buf[:n]); err != nil {
				return err
			}
			off += n
		}
	}
	return nil
}

// undoChunk bounds an undo record's data, so memory stays bounded.
const undoChunk = 4 << 20

// finishApply writes the cycle into the images, updates the trees and
// records the point. An error wrapping errDurable means the point is
// recorded and only the cleanup failed.
func (r *Replica) finishApply(c cycle.Cycle, pend pendingOp, plans *treePlans) (Point, error) {
	if err := r.writeImages(c.Extents); err != nil {
		return Point{}, err
	}
	if err := r.updateTrees(plans, r.state.Gen+1); err != nil {
		return Point{}, err
	}
	p := pend.Point
	p.Roots, p.RootsHash = r.roots(), hashtree.HashName
	rec := pointRecord{Point: p, Undo: pend.Undo}
	firstPoint := len(r.state.Points) == 0
	if firstPoint {
		rec.Undo = ""
	}
	next := r.state
	next.Points = append(append([]pointRecord(nil), r.state.Points...), rec)
	next.Epoch, next.Seq, next.NextUndo, next.Gen = p.Epoch, p.Cycle, r.state.NextUndo+1, r.state.Gen+1
	if err := r.saveStateAs(next); err != nil {
		return Point{}, &StageError{Stage: StageStateWritten, Err: err}
	}
	if firstPoint {
		os.Remove(r.undoPath(pend.Undo))
	}
	return p, r.doneApply()
}

// writeImages writes extents into the images, disk by disk, and syncs.
func (r *Replica) writeImages(extents []cycle.Extent) error {
	r.imageWrites++
	for _, name := range r.order {
		f := r.images[name]
		for _, e := range extents {
			if e.Disk != name {
				continue
			}
			var data []byte
			if !e.Zero {
				data = e.Data
			}
			if err := imageWriteRange(f, e.Offset, e.Length, data); err != nil {
				return noSpace(StageImageWritten, err)
			}
		}
		if err := r.stage(StageImageWritten); err != nil {
			return &StageError{Stage: StageImageWritten, Err: err}
		}
	}
	return r.syncImages(StageImagesSynced)
}

func (r *Replica) syncImages(stage string) error {
	for _, name := range r.order {
		if err := r.images[name].Sync(); err != nil {
			return noSpace(stage, err)
		}
	}
	if err := r.stage(stage); err != nil {
		return &StageError{Stage: stage, Err: err}
	}
	return nil
}

// treePlans are the hash tree updates of a cycle (hashtree.Plan, per disk),
// hashed from the cycle's bytes on other CPUs while the undo data and the
// images are written.
type treePlans struct {
	done  chan struct{}
	plans map[string]*hashtree.Plan
}

func (r *Replica) planTrees(extents []cycle.Extent) *treePlans {
	tp := &treePlans{done: make(chan struct{}), plans: map[string]*hashtree.Plan{}}
	trees := make([]*hashtree.Tree, len(r.order))
	for i, name := range r.order {
		trees[i] = r.trees[name]
	}
	go func() {
		defer close(tp.done)
		for i, name := range r.order {
			tp.plans[name] = trees[i].Plan(extentsOf(extents, name))
		}
	}()
	return tp
}

// wait returns once the plans are made.
func (tp *treePlans) wait() { <-tp.done }

// updateTrees re-hashes the leaves the plans name (those not hashed from
// the cycle's bytes are read from the written images) and saves the trees
// stamped with the image generation they describe.
func (r *Replica) updateTrees(plans *treePlans, gen uint64) error {
	plans.wait()
	for _, name := range r.order {
		if err := r.trees[name].Apply(r.images[name], plans.plans[name]); err != nil {
			return &StageError{Stage: StageTreesSaved, Err: err}
		}
		if err := r.trees[name].SaveCache(r.treePath(name), genStamp(gen)); err != nil {
			return noSpace(StageTreesSaved, err)
		}
	}
	if err := r.stage(StageTreesSaved); err != nil {
		return &StageError{Stage: StageTreesSaved, Err: err}
	}
	return nil
}

// extentsOf are the extents of disk, in order.
func extentsOf(extents []cycle.Extent, disk string) []cycle.Extent {
	var out []cycle.Extent
	for _, e := range extents {
		if e.Disk == disk {
			out = append(out, e)
		}
	}
	return out
}

func genStamp(gen uint64) string { return fmt.Sprintf("gen-%d", gen) }
