package disk

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/siterecovery/siterecovery/hostsync/cycle"
)

// CloseCycle ends the current cycle at the given instant and returns its
// number. The close marker is durable when it returns, and with it every
// write acknowledged before the call: a closed cycle is a crash-consistent
// point of the disk. Cycles are numbered without gaps; an empty cycle is
// fine. A disk that needs a resync returns an error wrapping ErrNeedsResync
// (ErrLogOverflow when the log overflowed).
func (d *Tracked) CloseCycle(at time.Time, appConsistent bool) (uint64, error) {
	d.mu.Lock()
	if err := d.trackingLocked(); err != nil {
		d.mu.Unlock()
		return 0, err
	}
	seq, err := d.closeLocked(at, appConsistent)
	d.mu.Unlock()
	if err != nil {
		return 0, err
	}
	if err := d.sync(); err != nil {
		return 0, err
	}
	return seq, nil
}

// closeLocked appends the close record of the open cycle and makes it the
// last closed one (not synced). Called with mu held.
func (d *Tracked) closeLocked(at time.Time, appConsistent bool) (uint64, error) {
	var flags uint8
	if appConsistent {
		flags = hrlFlagAppConsistent
	}
	seq := d.nextSeq
	rec, err := d.appendRecord(hrlClose, flags, seq, uint64(at.UnixNano()), nil)
	if err != nil {
		return 0, d.failLocked(err)
	}
	d.closed = append(d.closed, hrlCycle{
		seq: seq, closedAt: time.Unix(0, at.UnixNano()).UTC(), appConsistent: appConsistent,
		recs: d.open, end: rec.at + rec.size,
	})
	d.open = nil
	d.nextSeq++
	d.gen++
	return seq, nil
}

// trackingLocked says whether the log can produce cycles.
func (d *Tracked) trackingLocked() error {
	if err := d.writable(); err != nil {
		return err
	}
	if d.resync == "" {
		return nil
	}
	sentinel := ErrNeedsResync
	if d.overflow {
		sentinel = ErrLogOverflow
	}
	return &ResyncError{Disk: d.name, Reason: d.resync, Err: sentinel}
}

// NeedsResync says whether the change log cannot be trusted, and why.
func (d *Tracked) NeedsResync() (bool, string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.failed != nil {
		return true, fmt.Sprintf("disk failed: %v", d.failed)
	}
	return d.resync != "", d.resync
}

// Pending lists the closed cycles not acknowledged yet, oldest first.
func (d *Tracked) Pending() []uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]uint64, 0, len(d.closed))
	for _, c := range d.closed {
		out = append(out, c.seq)
	}
	return out
}

// Cycle returns a closed, unacknowledged cycle's changes, coalesced: the
// last write to a byte wins, adjacent changes merge, zeroed ranges are Zero
// extents. The data comes from the change log, so later writes to the disk
// do not show. VM and Epoch are left for the caller to set.
func (d *Tracked) Cycle(seq uint64) (cycle.Cycle, error) {
	d.mu.Lock()
	if err := d.trackingLocked(); err != nil {
		d.mu.Unlock()
		return cycle.Cycle{}, err
	}
	var ci *hrlCycle
	for i := range d.closed {
		if d.closed[i].seq == seq {
			ci = &d.closed[i]
		}
	}
	if ci == nil {
		d.mu.Unlock()
		return cycle.Cycle{}, fmt.Errorf("disk %s cycle %d: %w", d.name, seq, ErrCycleNotFound)
	}
	c := cycle.Cycle{Seq: seq, ClosedAt: ci.closedAt, AppConsistent: ci.appConsistent}
	recs := ci.recs
	d.filesMu.RLock() // taken before mu is released: the log stays this file
	d.mu.Unlock()
	defer d.filesMu.RUnlock()
	ext, err := buildCycleExtents(d.name, recs, coalesceHRL(recs), d.log)
	if err != nil {
		return cycle.Cycle{}, fmt.Errorf("disk %s cycle %d: %w", d.name, seq, err)
	}
	c.Extents = ext
	return c, nil
}

// Ack records that the recovery host applied every cycle up to seq: the log
// drops them (it is rewritten: new file, fsync, rename, fsync directory).
// Acknowledging an already dropped cycle again is a no-op; a cycle not
// closed yet is an error.
func (d *Tracked) Ack(seq uint64) error {
	d.rewriteMu.Lock()
	defer d.rewriteMu.Unlock()
	d.mu.Lock()
	if err := d.trackingLocked(); err != nil {
		d.mu.Unlock()
		return err
	}
	if seq >= d.nextSeq {
		d.mu.Unlock()
		return fmt.Errorf("disk %s: ack of cycle %d, last closed is %d: %w", d.name, seq, d.nextSeq-1, ErrCycleNotFound)
	}
	if seq < d.baseSeq {
		d.mu.Unlock()
		return nil
	}
	d.mu.Unlock()
	// The image must hold the dropped records durably before they go.
	if err := d.sync(); err != nil {
		return err
	}
	return d.compact(seq)
}

// compact rewrites the log without the cycles up to seq. The bulk is copied
// without mu (closed cycles never change); the tail appended meanwhile is
// copied under mu, then the new file replaces the old.
func (d *Tracked) compact(seq uint64) error {
	d.mu.Lock()
	if err := d.trackingLocked(); err != nil {
		d.mu.Unlock()
		return err // overflowed or closed since Ack checked
	}
	cut := d.closed[seq-d.baseSeq].end
	mid := d.logEnd
	old := d.log
	d.filesMu.RLock()
	d.mu.Unlock()
	tmp, err := d.startCompacted(seq+1, old, cut, mid)
	d.filesMu.RUnlock()
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.trackingLocked(); err != nil {
		// Closed, failed or overflowed meanwhile: the old log stays.
		return errors.Join(err, tmp.f.Close(), os.Remove(tmp.f.Name()))
	}
	if err := d.finishCompacted(tmp, old, mid); err != nil {
		return d.failLocked(err)
	}
	d.reindexLocked(seq, cut, tmp.prefix)
	return nil
}

type hrlCompacted struct {
	f      *os.File
	prefix int64 // bytes before the copied records: header and open record
	end    int64
}

// startCompacted writes a new log: header, an open record, then the old
// log's bytes [cut, mid).
func (d *Tracked) startCompacted(base uint64, old *os.File, cut, mid int64) (*hrlCompacted, error) {
	f, err := os.OpenFile(d.logPath+".tmp", os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create hrlCompacted change log: %w", err)
	}
	nd := &Tracked{log: f, logEnd: hrlHeaderSize}
	_, err = f.WriteAt(encodeHRLHeader(hrlHeader{diskSize: d.size, baseSeq: base}), 0)
	if err == nil {
		_, err = nd.appendRecord(hrlOpen, 0, 0, uint64(time.Now().UnixNano()), []byte(d.boot))
	}
	c := &hrlCompacted{f: f, prefix: nd.logEnd, end: nd.logEnd}
	if err == nil {
		err = c.copyFrom(old, cut, mid)
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("write hrlCompacted change log: %w", err), f.Close())
	}
	return c, nil
}

func (c *hrlCompacted) copyFrom(old *os.File, from, to int64) error {
	n, err := io.Copy(io.NewOffsetWriter(c.f, c.end), io.NewSectionReader(old, from, to-from))
	c.end += n
	return err
}

// finishCompacted copies the tail, syncs, renames and installs the file.
func (d *Tracked) finishCompacted(c *hrlCompacted, old *os.File, mid int64) error {
	err := c.copyFrom(old, mid, d.logEnd)
	if err == nil {
		err = fdatasync(c.f)
	}
	if err == nil {
		err = os.Rename(c.f.Name(), d.logPath)
	}
	if err == nil {
		err = SyncDir(filepath.Dir(d.logPath))
	}
	if err != nil {
		return errors.Join(fmt.Errorf("install hrlCompacted change log: %w", err), c.f.Close())
	}
	d.swapLog(c.f, c.end)
	return nil
}

// reindexLocked drops cycles up to seq and moves the remaining records'
// offsets into the new file.
func (d *Tracked) reindexLocked(seq uint64, cut, prefix int64) {
	shift := prefix - cut
	move := func(recs []hrlRec) []hrlRec {
		out := make([]hrlRec, len(recs))
		for i, r := range recs {
			r.at += shift
			r.dataAt += shift
			out[i] = r
		}
		return out
	}
	kept := append([]hrlCycle(nil), d.closed[seq-d.baseSeq+1:]...)
	for i := range kept {
		kept[i].recs = move(kept[i].recs)
		kept[i].end += shift
	}
	d.closed, d.open = kept, move(d.open)
	d.baseSeq = seq + 1
}

// ResetAfterResync starts change tracking afresh: the log is replaced by an
// empty one whose next cycle is nextSeq, pending cycles are dropped and the
// NeedsResync state clears. Call it when a resync (or initial replication)
// starts reading the disk: writes from then on are tracked and follow as the
// next cycles.
func (d *Tracked) ResetAfterResync(nextSeq uint64) error {
	if nextSeq == 0 {
		return fmt.Errorf("disk %s: reset: cycle numbers start at 1", d.name)
	}
	d.rewriteMu.Lock()
	defer d.rewriteMu.Unlock()
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.writable(); err != nil {
		return err
	}
	if err := d.replaceLog(nextSeq, ""); err != nil {
		return d.failLocked(err)
	}
	d.resync, d.overflow = "", false
	d.gen++
	return nil
}
