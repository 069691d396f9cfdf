package disk

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/rs/zerolog"
)

// Options tune a Tracked disk. The zero value is usable.
type Options struct {
	// Name is the disk name set on the extents of its cycles; default the
	// image's base name without extension.
	Name string
	// MaxLogBytes is the change log size above which the disk needs a
	// resync; default half the disk.
	MaxLogBytes int64
	// BootID identifies the running kernel boot; default
	// /proc/sys/kernel/random/boot_id. Tests set it to simulate a reboot.
	BootID string
	// NewLog says the image needs no change log from before: its content
	// was just made whole from elsewhere (a recovery point materialized as
	// a VM's disk at promotion), so there is nothing to track yet. A
	// missing change log is then started empty, cycles from 1, instead of
	// putting the disk in NeedsResync. An existing log is recovered as
	// usual.
	NewLog bool
	Logger zerolog.Logger
}

// Tracked is a tracked disk: a raw sparse disk image with its change log
// (<image>.hrl) beside it. Every write is appended to the log before it
// reaches the image; cycles of changes are closed, read back from the log,
// and dropped once the recovery host has applied them. Safe for concurrent
// use.
//
// Durability. A write returns once its log record and the image write are
// in the page cache; with fua, or after Flush, once both files are
// fdatasync'ed (concurrent flushes share one fsync). CloseCycle returns once
// its close marker is durable, with every write acknowledged before it.
//
// Crash of the process (kill -9, panic, OOM; the kernel keeps running). The
// page cache survives, so the log holds every write the image holds, in
// order, plus at most one record the image has not seen. On reopen (same
// kernel boot id as the last open): a torn record at the end of the log (cut
// short, bad checksum on the last record, or zero-filled blocks) is cut off;
// every record since the last open is replayed onto the image (idempotent);
// closed, unacknowledged cycles are all there. No acknowledged write is lost
// and nothing is lost silently.
//
// Crash of the host (power loss, kernel panic, reset: the boot id changes)
// while the disk was open, i.e. without the clean-shutdown marker Close
// writes: writes that were not flushed may have reached the image without
// their log record (the kernel writes dirty pages back in any order), so
// the log can no longer prove what changed. The disk opens in the
// NeedsResync state (the VM's data is intact; every flushed or FUA write is
// in the image) and the replica must be resynchronised by block hashes. A
// host that shut down cleanly (Close ran) reopens normally.
//
// Log that cannot be trusted: missing or unreadable, damaged anywhere but at
// its very end, made for another disk size, or above MaxLogBytes (half the
// disk by default): NeedsResync, persisted with a marker in the log so a
// restart does not forget it, until ResetAfterResync. Reads and writes keep
// working meanwhile; writes are then not tracked.
type Tracked struct {
	path, logPath, name string
	size, maxLog        int64
	boot                string
	logger              zerolog.Logger
	img                 *os.File
	isClosed            atomic.Bool

	// mu guards the fields below and orders each log append with its image
	// write, so that the log's order is the image's order.
	mu       sync.Mutex
	log      *os.File
	logEnd   int64
	baseSeq  uint64 // first cycle number the log file holds
	nextSeq  uint64 // number the next closed cycle gets
	closed   []hrlCycle
	open     []hrlRec
	resync   string // non-empty: the log is unusable, for this reason
	overflow bool
	failed   error
	gen      uint64 // appends so far, for group commit
	scratch  []byte
	// folding are the blocks (sorted, of foldBlock bytes) a
	// CloseCycleFolded reads outside mu; writes that touch them wait on
	// foldDone.
	folding   []int
	foldBlock int64
	foldDone  *sync.Cond

	// rewriteMu serialises the rewrites of the log file (Ack's compaction,
	// ResetAfterResync); taken before mu.
	rewriteMu sync.Mutex

	// filesMu is held shared while the log file is read or fsynced outside
	// mu, exclusively (after mu) to replace or close it.
	filesMu sync.RWMutex
	syncer  groupSync
	fsyncs  atomic.Int64 // group commits run, for tests and metrics
}

// Open opens the disk image at path, creating a sparse image of
// size bytes (and an empty change log) if it does not exist; size 0 means
// "whatever the existing image holds". It recovers the change log after a
// crash (see Tracked). A log that cannot be trusted does not fail
// the open: the disk is returned in the NeedsResync state, which persists
// until ResetAfterResync. A missing log is one (the image may hold writes
// no log recorded), unless opts.NewLog says there was none to keep.
func Open(path string, size int64, opts Options) (*Tracked, error) {
	d := &Tracked{path: path, logPath: path + ".hrl", name: opts.Name, logger: opts.Logger}
	if d.name == "" {
		d.name = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	}
	d.syncer.cond = sync.NewCond(&d.syncer.mu)
	d.foldDone = sync.NewCond(&d.mu)
	boot, err := bootID(opts.BootID)
	if err != nil {
		return nil, err
	}
	d.boot = boot
	created, err := d.openImage(size)
	if err != nil {
		return nil, err
	}
	d.maxLog = opts.MaxLogBytes
	if d.maxLog <= 0 {
		d.maxLog = d.size / 2
	}
	if err := d.openLog(created, opts.NewLog); err != nil {
		return nil, errors.Join(err, d.img.Close())
	}
	return d, nil
}

func bootID(given string) (string, error) {
	if given != "" {
		return given, nil
	}
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", fmt.Errorf("read boot id: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// openImage opens or creates the image; it reports whether it created it.
func (d *Tracked) openImage(size int64) (bool, error) {
	if size < 0 {
		return false, fmt.Errorf("disk %s: negative size %d", d.path, size)
	}
	f, err := os.OpenFile(d.path, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return true, d.createImage(size)
	}
	if err != nil {
		return false, fmt.Errorf("open disk image: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		return false, errors.Join(fmt.Errorf("stat disk image: %w", err), f.Close())
	}
	if st.Size() == 0 || (size > 0 && st.Size() != size) {
		return false, errors.Join(fmt.Errorf("disk image %s holds %d bytes, want %d", d.path, st.Size(), size), f.Close())
	}
	d.img, d.size = f, st.Size()
	return false, nil
}

func (d *Tracked) createImage(size int64) error {
	if size == 0 {
		return fmt.Errorf("disk image %s does not exist and no size was given", d.path)
	}
	f, err := os.OpenFile(d.path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create disk image: %w", err)
	}
	if err := f.Truncate(size); err != nil {
		return errors.Join(fmt.Errorf("size disk image: %w", err), f.Close(), os.Remove(d.path))
	}
	if err := errors.Join(f.Sync(), SyncDir(filepath.Dir(d.path))); err != nil {
		return errors.Join(fmt.Errorf("sync new disk image: %w", err), f.Close())
	}
	d.img, d.size = f, size
	return nil
}

// Size returns the disk size in bytes.
func (d *Tracked) Size() int64 { return d.size }

// Name returns the disk name its extents carry.
func (d *Tracked) Name() string { return d.name }

// Path returns the image path; the change log is Path()+".hrl".
func (d *Tracked) Path() string { return d.path }

func (d *Tracked) checkRange(off, length int64) error {
	if off < 0 || length < 0 || off > d.size || length > d.size-off {
		return fmt.Errorf("disk %s: %d bytes at %d (size %d): %w", d.name, length, off, d.size, ErrOutOfRange)
	}
	return nil
}

// ReadAt reads len(p) bytes at off from the image.
func (d *Tracked) ReadAt(p []byte, off int64) (int, error) {
	if err := d.checkRange(off, int64(len(p))); err != nil {
		return 0, err
	}
	if d.isClosed.Load() {
		return 0, ErrClosed
	}
	n, err := d.img.ReadAt(p, off)
	if err != nil {
		return n, fmt.Errorf("read disk %s: %w", d.name, err)
	}
	return n, nil
}

// WriteAt writes p at off: the change log record first, then the image.
// With fua it returns only once both are durable (group-committed).
func (d *Tracked) WriteAt(p []byte, off int64, fua bool) error {
	if err := d.checkRange(off, int64(len(p))); err != nil {
		return err
	}
	for len(p) > 0 {
		n := min(len(p), hrlMaxRecordData)
		if err := d.write(hrlWrite, 0, off, int64(n), p[:n]); err != nil {
			return err
		}
		p, off = p[n:], off+int64(n)
	}
	if fua {
		return d.Flush()
	}
	return nil
}

// WriteZeroes makes length bytes at off read as zero, keeping them
// allocated where the filesystem can.
func (d *Tracked) WriteZeroes(off, length int64, fua bool) error {
	return d.zero(off, length, 0, fua)
}

// Trim discards length bytes at off (a hole is punched); they read as zero
// afterwards and are tracked as a zero extent.
func (d *Tracked) Trim(off, length int64, fua bool) error {
	return d.zero(off, length, hrlFlagTrim, fua)
}

func (d *Tracked) zero(off, length int64, flags uint8, fua bool) error {
	if err := d.checkRange(off, length); err != nil {
		return err
	}
	if length == 0 {
		return nil
	}
	if err := d.write(hrlZero, flags, off, length, nil); err != nil {
		return err
	}
	if fua {
		return d.Flush()
	}
	return nil
}

// write appends one record (unless the log is unusable) and applies it to
// the image, both under mu.
func (d *Tracked) write(kind, flags uint8, off, length int64, data []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.waitFoldLocked(off, length)
	if err := d.writable(); err != nil {
		return err
	}
	rec := hrlRec{kind: kind, flags: flags, a: uint64(off), b: uint64(length)}
	if d.resync == "" {
		var err error
		if rec, err = d.appendRecord(kind, flags, uint64(off), uint64(length), data); err != nil {
			return d.failLocked(err)
		}
		d.open = append(d.open, rec)
	}
	if err := applyHRLRecord(d.img, rec, data); err != nil {
		return d.failLocked(err)
	}
	d.gen++
	d.checkOverflowLocked()
	return nil
}

func (d *Tracked) writable() error {
	if d.isClosed.Load() {
		return ErrClosed
	}
	if d.failed != nil {
		return fmt.Errorf("disk %s: %w: %w", d.name, ErrFailed, d.failed)
	}
	return nil
}

// failLocked makes an I/O error sticky: after a failed write or fsync the
// disk's durability is unknown.
func (d *Tracked) failLocked(err error) error {
	if d.failed == nil {
		d.failed = err
		d.logger.Error().Err(err).Str("disk", d.name).Msg("disk failed")
	}
	return fmt.Errorf("disk %s: %w: %w", d.name, ErrFailed, err)
}

// appendRecord writes one record at the end of the log (not synced).
func (d *Tracked) appendRecord(kind, flags uint8, a, b uint64, data []byte) (hrlRec, error) {
	size := int64(hrlRecHeaderSize + len(data))
	if cap(d.scratch) < hrlRecHeaderSize+64<<10 {
		d.scratch = make([]byte, hrlRecHeaderSize+64<<10)
	}
	hdr := d.scratch[:hrlRecHeaderSize]
	encodeHRLRecHeader(hdr, kind, flags, a, b, data)
	var err error
	if len(data) <= 64<<10 {
		buf := append(hdr, data...)
		_, err = d.log.WriteAt(buf, d.logEnd)
	} else if _, err = d.log.WriteAt(hdr, d.logEnd); err == nil {
		_, err = d.log.WriteAt(data, d.logEnd+hrlRecHeaderSize)
	}
	if err != nil {
		return hrlRec{}, fmt.Errorf("append to change log: %w", err)
	}
	rec := hrlRec{kind: kind, flags: flags, a: a, b: b, at: d.logEnd, dataAt: d.logEnd + hrlRecHeaderSize, size: size}
	d.logEnd += size
	return rec, nil
}

// checkOverflowLocked moves the disk to NeedsResync once the log passes its
// limit.
func (d *Tracked) checkOverflowLocked() {
	if d.resync != "" || d.logEnd <= d.maxLog {
		return
	}
	reason := fmt.Sprintf("change log holds %d bytes, above the limit of %d", d.logEnd, d.maxLog)
	d.overflow = true
	if err := d.markResyncLocked(reason); err != nil {
		_ = d.failLocked(err)
	}
}

// markResyncLocked appends a durable resync marker so that the state
// survives a restart, and stops tracking.
func (d *Tracked) markResyncLocked(reason string) error {
	d.resync = reason
	d.closed, d.open = nil, nil
	d.logger.Warn().Str("disk", d.name).Str("reason", reason).Msg("disk needs resync")
	if _, err := d.appendRecord(hrlResync, 0, 0, 0, []byte(reason)); err != nil {
		return err
	}
	if err := fdatasync(d.log); err != nil {
		return fmt.Errorf("sync change log: %w", err)
	}
	return nil
}

// Flush makes every write acknowledged so far durable, in the log and in the
// image. Concurrent callers share one fsync of each file.
func (d *Tracked) Flush() error {
	if d.isClosed.Load() {
		return ErrClosed
	}
	return d.sync()
}

// Close writes a clean-shutdown marker, syncs and closes the files. Safe
// twice.
func (d *Tracked) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.isClosed.Swap(true) {
		return nil
	}
	d.filesMu.Lock()
	defer d.filesMu.Unlock()
	var errs []error
	if d.failed == nil {
		if d.resync == "" {
			if _, err := d.appendRecord(hrlClean, 0, 0, 0, nil); err != nil {
				errs = append(errs, err)
			}
		}
		errs = append(errs, fdatasync(d.img), fdatasync(d.log))
	}
	errs = append(errs, d.img.Close(), d.log.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close disk %s: %w", d.name, err)
	}
	return nil
}
