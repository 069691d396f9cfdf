package disk

import (
	"io"
	"slices"
	"time"

	"github.com/siterecovery/siterecovery/hostsync/cycle"
)

// Mark is a point in a disk's stream of changes, for a structure kept
// beside the disk from its image and its changes (the agent keeps a hash
// tree of each disk exact at every cycle close): the structure accounts for
// every change up to the disk's write generation Gen, and every change after
// it is a record, in the change log, of the open cycle or of a closed cycle
// from Next on. A mark means something only to the disk that made it.
type Mark struct {
	Gen  uint64 // writes and cycle closes the structure accounts for
	Next uint64 // first cycle whose records the structure may lack
}

// Mark returns the mark of the disk's changes as they stand now, that of a
// structure built from the image from now on: a block written while the
// structure reads the image is in a record after the mark, so the next
// CloseCycleFolded hands it over again. It fails as CloseCycle does on a
// disk that cannot produce cycles.
func (d *Tracked) Mark() (Mark, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.trackingLocked(); err != nil {
		return Mark{}, err
	}
	return Mark{Gen: d.gen - uint64(len(d.open)), Next: d.nextSeq}, nil
}

// A Folder brings a structure kept beside the disk up to a cycle's close
// (CloseCycleFolded calls it): the agent's kept hash tree re-hashes the
// leaves the cycle's changes touched.
type Folder interface {
	// BlockSize is the size in bytes of the blocks Plan names.
	BlockSize() int64
	// Plan is called with the disk's writes held, once the cycle's close
	// record is appended, with every change since the structure's mark
	// in log order (Offset and Length set, no Disk and no Data). It
	// returns the blocks Fold will read, as sorted block indexes; writes
	// that touch them wait until Fold returns, other writes go on.
	Plan(changed []cycle.Extent) []int
	// Fold reads the planned blocks from the image (an *os.File) to
	// bring the structure up to the close of cycle seq, where it then
	// stands at mark next, and reports whether it succeeded.
	Fold(img io.ReaderAt, changed []cycle.Extent, seq uint64, next Mark) bool
}

// CloseCycleFolded is CloseCycle (same close record, same durability, same
// numbering) that also brings f, which stands at mark since, up to the new
// cycle's close. The changes since the mark are listed and the cycle closed
// under the write lock; f.Fold runs once it is released, while the close
// record is synced and only the writes to the blocks f planned wait, so the
// guest's other writes go on. It reports whether f was brought up to the
// cycle (exact). When the log no longer holds every change since the mark (a
// ResetAfterResync, an untracked write, cycles acknowledged before they were
// folded), f is not called, exact is false and the cycle is closed all the
// same; exact is false too when f.Fold fails.
func (d *Tracked) CloseCycleFolded(at time.Time, appConsistent bool, since Mark, f Folder) (uint64, bool, error) {
	d.mu.Lock()
	if err := d.trackingLocked(); err != nil {
		d.mu.Unlock()
		return 0, false, err
	}
	changed, exact := d.changesSinceLocked(since)
	seq, err := d.closeLocked(at, appConsistent)
	if err != nil {
		d.mu.Unlock()
		return 0, false, err
	}
	next := Mark{Gen: d.gen, Next: d.nextSeq}
	if exact {
		d.folding, d.foldBlock = f.Plan(changed), f.BlockSize()
	}
	d.mu.Unlock()
	// The close marker is synced while the blocks are read.
	synced := make(chan error, 1)
	go func() { synced <- d.sync() }()
	if exact {
		exact = d.fold(f, changed, seq, next)
	}
	if err := <-synced; err != nil {
		return 0, false, err
	}
	return seq, exact, nil
}

// changesSinceLocked lists the change records since mark m: those of the
// closed cycles from m.Next on and the open ones. It returns false when the
// log does not hold every change since (the generations do not add up).
// Called with mu held.
func (d *Tracked) changesSinceLocked(m Mark) ([]cycle.Extent, bool) {
	var changed []cycle.Extent
	count := uint64(len(d.open))
	for _, c := range d.closed {
		if c.seq < m.Next {
			continue
		}
		count += uint64(len(c.recs)) + 1
		changed = appendRecExtents(changed, c.recs)
	}
	missing := m.Next < d.nextSeq && (len(d.closed) == 0 || d.closed[0].seq > m.Next)
	if missing || d.gen-m.Gen != count {
		return nil, false
	}
	return appendRecExtents(changed, d.open), true
}

// fold runs f.Fold, then lets the writes that wait for the blocks it read go
// on.
func (d *Tracked) fold(f Folder, changed []cycle.Extent, seq uint64, next Mark) bool {
	defer func() {
		d.mu.Lock()
		d.folding = nil
		d.foldDone.Broadcast()
		d.mu.Unlock()
	}()
	return f.Fold(d.img, changed, seq, next)
}

// waitFoldLocked waits while a fold reads a block that [off, off+length)
// touches. Called with mu held (Wait releases it meanwhile).
func (d *Tracked) waitFoldLocked(off, length int64) {
	for d.folding != nil && touchesBlocks(d.folding, d.foldBlock, off, length) {
		d.foldDone.Wait()
	}
}

// touchesBlocks says whether [off, off+length) touches one of the sorted
// blocks of size bytes.
func touchesBlocks(sorted []int, size, off, length int64) bool {
	first := int(off / size)
	last := int((off + max(length, 1) - 1) / size)
	i, _ := slices.BinarySearch(sorted, first)
	return i < len(sorted) && sorted[i] <= last
}

func appendRecExtents(out []cycle.Extent, recs []hrlRec) []cycle.Extent {
	for _, r := range recs {
		out = append(out, cycle.Extent{Offset: r.off(), Length: r.length()})
	}
	return out
}
