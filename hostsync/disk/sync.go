package disk

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// groupSync lets concurrent flushes share fsyncs: a caller waits for a sync
// that started after its writes, or leads one that covers every write
// appended so far.
type groupSync struct {
	mu      sync.Mutex
	cond    *sync.Cond
	running bool
	done    uint64 // every append up to this generation is durable
}

// sync makes durable every append made before the call.
func (d *Tracked) sync() error {
	d.mu.Lock()
	target := d.gen
	d.mu.Unlock()
	s := &d.syncer
	s.mu.Lock()
	for s.running && s.done < target {
		s.cond.Wait()
	}
	if s.done >= target {
		s.mu.Unlock()
		return nil
	}
	s.running = true
	s.mu.Unlock()

	d.mu.Lock()
	snap := d.gen
	d.mu.Unlock()
	err := d.syncFiles()

	s.mu.Lock()
	s.running = false
	if err == nil && snap > s.done {
		s.done = snap
	}
	s.cond.Broadcast()
	s.mu.Unlock()
	if err != nil {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.failLocked(err)
	}
	return nil
}

// syncFiles fsyncs the log, then the image.
func (d *Tracked) syncFiles() error {
	d.filesMu.RLock()
	defer d.filesMu.RUnlock()
	if d.isClosed.Load() {
		return ErrClosed
	}
	d.fsyncs.Add(1)
	if err := fdatasync(d.log); err != nil {
		return fmt.Errorf("sync change log: %w", err)
	}
	if err := fdatasync(d.img); err != nil {
		return fmt.Errorf("sync disk image: %w", err)
	}
	return nil
}

func fdatasync(f *os.File) error {
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// SyncDir fsyncs the directory dir, so that a file created, renamed or
// removed in it stays so across a crash. The disk syncs its image's and
// log's directory so; the agent does for the files it replaces.
func SyncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory to sync: %w", err)
	}
	err = f.Sync()
	return errors.Join(err, f.Close())
}

// applyHRLRecord makes a write or zero record true in the image.
func applyHRLRecord(img *os.File, r hrlRec, data []byte) error {
	if r.kind == hrlWrite {
		if _, err := img.WriteAt(data, r.off()); err != nil {
			return fmt.Errorf("write disk image: %w", err)
		}
		return nil
	}
	mode := uint32(unix.FALLOC_FL_ZERO_RANGE)
	if r.flags&hrlFlagTrim != 0 {
		mode = unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE
	}
	err := unix.Fallocate(int(img.Fd()), mode, r.off(), r.length())
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL) {
		return writeZeros(img, r.off(), r.length())
	}
	if err != nil {
		return fmt.Errorf("zero disk image range: %w", err)
	}
	return nil
}

var zeroBlock = make([]byte, 1<<20)

func writeZeros(f *os.File, off, length int64) error {
	for length > 0 {
		n := min(length, int64(len(zeroBlock)))
		if _, err := f.WriteAt(zeroBlock[:n], off); err != nil {
			return fmt.Errorf("write zeros to disk image: %w", err)
		}
		off, length = off+n, length-n
	}
	return nil
}
