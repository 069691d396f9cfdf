package replica

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/siterecovery/siterecovery/hostsync/cycle"
	"github.com/siterecovery/siterecovery/hostsync/sparse"
)

// TestView is a test failover's copy-on-write view of a recovery point:
// one writable TestDisk per disk. Reads come from the point (the replica's
// image with the undo data of newer points laid over it) unless the test
// VM wrote the range; writes go to an overlay file in the view's
// directory. The replica is never modified and replication goes on; the
// point is kept from pruning until Remove.
type TestView struct {
	r     *Replica
	point string
	dir   string
	disks map[string]*TestDisk
	once  sync.Once

	idxMu      sync.Mutex
	idx        map[string][]viewPiece // by disk, for idxVersion
	idxVersion uint64
}

// TestDisk is one disk of a TestView, served over NBD: it has the methods
// of the NBD server's nbd.ExportDisk (asserted in hostsync, which serves
// it; this package does not import nbd). Safe for concurrent use.
type TestDisk struct {
	view    *TestView
	name    string
	size    int64
	overlay *os.File
	mu      sync.RWMutex
	written []cycle.Range // sorted, merged: ranges read from the overlay
}

// TestCopy opens a copy-on-write view of point id with its overlay files
// in dir (dir/<disk>.overlay).
func (r *Replica) TestCopy(id string, dir string) (*TestView, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.usable(); err != nil {
		return nil, err
	}
	if _, err := r.pointIndex(id); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	v := &TestView{r: r, point: id, dir: dir, disks: map[string]*TestDisk{}}
	for _, name := range r.order {
		f, err := os.OpenFile(filepath.Join(dir, name+".overlay"), os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o644)
		if err == nil {
			err = f.Truncate(r.disks[name].Size)
		}
		if err != nil {
			v.Close()
			return nil, err
		}
		v.disks[name] = &TestDisk{view: v, name: name, size: r.disks[name].Size, overlay: f}
	}
	r.pins[id]++
	return v, nil
}

// Point is the id of the point the view shows.
func (v *TestView) Point() string { return v.point }

// Disk returns the view's disk, or nil if the VM has no such disk.
func (v *TestView) Disk(name string) *TestDisk { return v.disks[name] }

// Remove closes the view, deletes its overlays and releases the point.
// Safe twice.
func (v *TestView) Remove() error {
	var err error
	v.once.Do(func() {
		v.r.mu.Lock()
		if v.r.pins[v.point]--; v.r.pins[v.point] <= 0 {
			delete(v.r.pins, v.point)
		}
		v.r.mu.Unlock()
		err = v.Close()
		for name := range v.disks {
			if rmErr := os.Remove(filepath.Join(v.dir, name+".overlay")); rmErr != nil && !os.IsNotExist(rmErr) {
				err = errors.Join(err, rmErr)
			}
		}
	})
	return err
}

// Close closes the view's overlay files and leaves them on disk, the point
// still pinned: for an agent that stops while a test failover runs. Remove
// is what ends a view.
func (v *TestView) Close() error {
	var err error
	for _, d := range v.disks {
		err = errors.Join(err, d.overlay.Close())
	}
	return err
}

// Size is the disk's size in bytes.
func (d *TestDisk) Size() int64 { return d.size }

// ReadAt reads the test disk: what the test VM wrote, else the point.
func (d *TestDisk) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off > d.size {
		return 0, fmt.Errorf("%w: read at %d of a %d byte disk", cycle.ErrInvalid, off, d.size)
	}
	n := int(min(int64(len(p)), d.size-off))
	d.mu.RLock()
	defer d.mu.RUnlock()
	for _, part := range d.split(off, int64(n)) {
		buf := p[part.Offset-off : part.Offset-off+part.Length]
		var err error
		if part.Data {
			_, err = d.overlay.ReadAt(buf, part.Offset)
		} else {
			err = d.view.r.readPoint(d.view, d.name, buf, part.Offset)
		}
		if err != nil {
			return 0, err
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// split cuts [off, off+n) into parts written in the overlay (data) and
// not. Callers hold mu.
func (d *TestDisk) split(off, n int64) []sparse.Region {
	var out []sparse.Region
	pos, end := off, off+n
	i := sort.Search(len(d.written), func(i int) bool { return d.written[i].Offset+d.written[i].Length > pos })
	for ; i < len(d.written) && pos < end; i++ {
		w := d.written[i]
		if w.Offset >= end {
			break
		}
		if w.Offset > pos {
			out = append(out, sparse.Region{Offset: pos, Length: w.Offset - pos, Data: false})
			pos = w.Offset
		}
		stop := min(end, w.Offset+w.Length)
		out = append(out, sparse.Region{Offset: pos, Length: stop - pos, Data: true})
		pos = stop
	}
	if pos < end {
		out = append(out, sparse.Region{Offset: pos, Length: end - pos, Data: false})
	}
	return out
}

// WriteAt writes to the overlay; with fua the overlay is synced before it
// returns.
func (d *TestDisk) WriteAt(p []byte, off int64, fua bool) error {
	if off < 0 || off+int64(len(p)) > d.size {
		return fmt.Errorf("%w: write at %d+%d of a %d byte disk", cycle.ErrInvalid, off, len(p), d.size)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.overlay.WriteAt(p, off); err != nil {
		return err
	}
	d.written = mergeRanges(append(d.written, cycle.Range{Offset: off, Length: int64(len(p))}))
	if fua {
		return d.overlay.Sync()
	}
	return nil
}

// WriteZeroes zeroes a range of the test disk.
func (d *TestDisk) WriteZeroes(off, length int64, fua bool) error {
	if off < 0 || length < 0 || off+length > d.size {
		return fmt.Errorf("%w: zero at %d+%d of a %d byte disk", cycle.ErrInvalid, off, length, d.size)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := imageWriteRange(d.overlay, off, length, nil); err != nil {
		return err
	}
	d.written = mergeRanges(append(d.written, cycle.Range{Offset: off, Length: length}))
	if fua {
		return d.overlay.Sync()
	}
	return nil
}

// Trim discards a range: on a test disk it reads back as zeros.
func (d *TestDisk) Trim(off, length int64, fua bool) error {
	return d.WriteZeroes(off, length, fua)
}

// Flush syncs the overlay.
func (d *TestDisk) Flush() error { return d.overlay.Sync() }

// readPoint reads disk bytes at point id: the image with the undo data of
// every newer point laid over it (the oldest wins), through the view's
// index of those undo records.
func (r *Replica) readPoint(v *TestView, disk string, p []byte, off int64) error {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		return ErrClosed
	}
	pieces, err := v.index(disk)
	if err != nil {
		return err
	}
	if _, err := r.images[disk].ReadAt(p, off); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	end := off + int64(len(p))
	i := sort.Search(len(pieces), func(i int) bool { return pieces[i].end > off })
	for ; i < len(pieces) && pieces[i].off < end; i++ {
		pc := pieces[i]
		from, to := max(pc.off, off), min(pc.end, end)
		if err := pc.u.read(pc.rec, from, p[from-off:to-off]); err != nil {
			return err
		}
	}
	return nil
}

// viewPiece is a range of a disk whose bytes at a view's point are in an
// undo record.
type viewPiece struct {
	off, end int64
	u        *undoFile
	rec      undoRec
}

// index returns the sorted, non-overlapping undo pieces of disk for the
// view's point, rebuilt when the replica's points changed. Callers hold
// the replica's mu for reading.
func (v *TestView) index(disk string) ([]viewPiece, error) {
	v.idxMu.Lock()
	defer v.idxMu.Unlock()
	if v.idxVersion != v.r.version || v.idx == nil {
		v.idx, v.idxVersion = map[string][]viewPiece{}, v.r.version
	}
	if pieces, ok := v.idx[disk]; ok {
		return pieces, nil
	}
	pieces, err := v.r.buildViewIndex(v.point, disk)
	if err != nil {
		return nil, err
	}
	v.idx[disk] = pieces
	return pieces, nil
}

// buildViewIndex lays the undo records of the points after id over each
// other, oldest first (it wins), and returns the pieces in disk order.
func (r *Replica) buildViewIndex(id, disk string) ([]viewPiece, error) {
	k, err := r.pointIndex(id)
	if err != nil {
		return nil, err
	}
	var covered []cycle.Range
	var pieces []viewPiece
	for j := k + 1; j < len(r.state.Points); j++ {
		u, err := r.cachedUndo(r.state.Points[j].Undo)
		if err != nil {
			return nil, err
		}
		var added []cycle.Range
		for _, rec := range u.recs {
			if rec.disk != disk {
				continue
			}
			for _, part := range subtractRanges(cycle.Range{Offset: rec.off, Length: rec.length}, covered) {
				pieces = append(pieces, viewPiece{off: part.Offset, end: part.Offset + part.Length, u: u, rec: rec})
			}
			added = append(added, cycle.Range{Offset: rec.off, Length: rec.length})
		}
		covered = mergeRanges(append(covered, added...))
	}
	return trimPieces(pieces), nil
}

// trimPieces sorts pieces and trims overlaps, which only pieces of one
// undo file can have (and then with the same bytes).
func trimPieces(pieces []viewPiece) []viewPiece {
	sort.SliceStable(pieces, func(a, b int) bool { return pieces[a].off < pieces[b].off })
	out := pieces[:0]
	for _, pc := range pieces {
		if n := len(out); n > 0 && pc.off < out[n-1].end {
			pc.off = out[n-1].end
		}
		if pc.off < pc.end {
			out = append(out, pc)
		}
	}
	return out
}
