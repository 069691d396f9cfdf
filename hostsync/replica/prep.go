package replica

import (
	"fmt"
	"os"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/siterecovery/siterecovery/hostsync/cycle"
)

// Apply saves the bytes a cycle overwrites (its undo file) before it writes
// anything. The receiver need not wait for the last batch to begin that:
// Preimage records the undo data of each batch as it arrives, while the
// next batches are still on the way, into an undo file that is not yet
// named. Apply then only syncs and names it, provided the images have not
// changed since the first batch and the batches pre-imaged are the cycle's
// extents, in order; otherwise it drops the file and writes the undo data
// itself. Nothing a preimage writes is ever read at recovery: an unnamed
// undo file is an orphan, removed at the next open.

// prepName is the undo file being prepared (its temporary file is
// prepName + ".tmp", like every undo file's).
const prepName = "incoming"

// undoPrep is the undo data of the cycle being received.
type undoPrep struct {
	epoch, seq uint64
	next       int    // index of the batch expected next
	writes     uint64 // Replica.imageWrites when it began
	ranges     []extentRange
	w          *undoWriter
}

// extentRange is an extent without its bytes.
type extentRange struct {
	disk        string
	off, length int64
}

// Preimage records the undo data of batch index of cycle seq at epoch,
// ahead of the Apply of that cycle. Batch 0 begins a new preparation
// (dropping any other); a later batch extends the one under way if it is
// the next of the same cycle, and drops it otherwise. It never changes an
// image, and any error only drops the preparation: Apply then writes the
// undo data itself (and reports what fails there).
func (r *Replica) Preimage(epoch, seq uint64, index int, extents []cycle.Extent) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	if index == 0 {
		r.dropPrep()
		if err := r.beginPrep(epoch, seq); err != nil {
			return err
		}
	}
	p := r.prep
	if p == nil || p.epoch != epoch || p.seq != seq || p.next != index || p.writes != r.imageWrites {
		r.dropPrep()
		return fmt.Errorf("%w: preimage of batch %d of cycle %d/%d: not the batch expected", cycle.ErrInvalid, index, epoch, seq)
	}
	if err := r.preimageExtents(p, extents); err != nil {
		r.dropPrep()
		return err
	}
	p.next++
	return nil
}

func (r *Replica) beginPrep(epoch, seq uint64) error {
	if r.broken || r.unsynced || len(r.state.Points) == 0 {
		return fmt.Errorf("%w: no preimage on a replica without a durable point", ErrState)
	}
	if err := r.checkSeq(epoch, seq); err != nil {
		return err
	}
	w, err := createUndo(r.undoPath(prepName))
	if err != nil {
		return err
	}
	r.prep = &undoPrep{epoch: epoch, seq: seq, writes: r.imageWrites, w: w}
	return nil
}

func (r *Replica) preimageExtents(p *undoPrep, extents []cycle.Extent) error {
	for _, e := range extents {
		if err := r.checkExtent(e); err != nil {
			return err
		}
		if err := preImage(p.w, r.images[e.Disk], e); err != nil {
			return err
		}
		p.ranges = append(p.ranges, extentRange{e.Disk, e.Offset, e.Length})
	}
	// Start writing back now, so that Apply's sync finds little to do.
	if err := p.w.w.Flush(); err != nil {
		return err
	}
	startWriteback(p.w.f)
	return nil
}

// startWriteback asks the kernel to start writing f's dirty pages back
// without waiting. It is a hint: the sync that follows is what makes the
// bytes durable and reports any failure, so a file system that does not
// support it changes nothing.
func startWriteback(f *os.File) {
	_ = unix.SyncFileRange(int(f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
}

// takePrep finishes the prepared undo file as name when it holds exactly
// c's undo data; ok is false (and the preparation dropped) otherwise.
func (r *Replica) takePrep(c cycle.Cycle, name string) (ok bool, err error) {
	p := r.prep
	r.prep = nil
	if p == nil {
		return false, nil
	}
	if p.epoch != c.Epoch || p.seq != c.Seq || p.writes != r.imageWrites || !sameRanges(p.ranges, c.Extents) {
		p.w.abort()
		return false, nil
	}
	r.preimaged++
	return true, p.w.finishAs(r.undoPath(name))
}

func sameRanges(rs []extentRange, extents []cycle.Extent) bool {
	return slices.EqualFunc(rs, extents, func(r extentRange, e cycle.Extent) bool {
		return r.disk == e.Disk && r.off == e.Offset && r.length == e.Length
	})
}

// dropPrep abandons the preparation under way, if any.
func (r *Replica) dropPrep() {
	if r.prep != nil {
		r.prep.w.abort()
		r.prep = nil
	}
}
