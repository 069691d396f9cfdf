package disk

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// openLog opens or creates the change log and recovers it (see Tracked for
// the rules); created says the image was just created, newLog that it has
// no history to keep (Options.NewLog): a missing log is then started, not
// a loss.
func (d *Tracked) openLog(created, newLog bool) error {
	_, statErr := os.Stat(d.logPath)
	logExists := statErr == nil
	if statErr != nil && !errors.Is(statErr, fs.ErrNotExist) {
		return d.resetAtOpen(fmt.Sprintf("change log unreadable: %v", statErr))
	}
	switch {
	case created && logExists:
		return d.resetAtOpen("disk image was missing (created empty) while its change log exists")
	case created, newLog && !logExists:
		return d.replaceLog(1, "")
	case !logExists:
		return d.resetAtOpen("change log missing")
	}
	f, err := os.OpenFile(d.logPath, os.O_RDWR, 0)
	if err != nil {
		return d.resetAtOpen(fmt.Sprintf("change log unreadable: %v", err))
	}
	scan, reason := d.scanOpened(f)
	if reason != "" {
		if err := f.Close(); err != nil {
			return fmt.Errorf("close change log: %w", err)
		}
		return d.resetAtOpen(reason)
	}
	if err := d.recover(f, scan); err != nil {
		return errors.Join(err, f.Close())
	}
	return nil
}

// scanOpened reads the log; a non-empty reason means it cannot be trusted.
func (d *Tracked) scanOpened(f *os.File) (*hrlScan, string) {
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Sprintf("change log unreadable: %v", err)
	}
	scan, err := scanHRL(f, st.Size())
	if err != nil {
		return nil, err.Error()
	}
	if scan.header.diskSize != d.size {
		return nil, fmt.Sprintf("change log is for a disk of %d bytes, the image holds %d", scan.header.diskSize, d.size)
	}
	if scan.resync != "" {
		return nil, scan.resync
	}
	clean := scan.clean && !scan.torn
	if !clean && scan.lastOpenBoot != d.boot {
		return nil, "host restarted (power loss or crash) without a clean shutdown of the disk: the image may hold writes its change log lost"
	}
	return scan, ""
}

// recover cuts a torn tail, redoes the records the image may miss after a
// process crash, loads the index and appends an open record.
func (d *Tracked) recover(f *os.File, scan *hrlScan) error {
	if scan.torn {
		d.logger.Warn().Str("disk", d.name).Int64("at", scan.validEnd).Msg("change log: torn tail cut off")
		if err := f.Truncate(scan.validEnd); err != nil {
			return fmt.Errorf("cut torn change log tail: %w", err)
		}
	}
	if !scan.clean {
		if err := d.redo(f, scan.redo); err != nil {
			return err
		}
	}
	d.log, d.logEnd = f, scan.validEnd
	d.baseSeq = scan.header.baseSeq
	d.nextSeq = scan.header.baseSeq + uint64(len(scan.closed))
	d.closed, d.open = scan.closed, scan.open
	if _, err := d.appendRecord(hrlOpen, 0, 0, uint64(time.Now().UnixNano()), []byte(d.boot)); err != nil {
		return err
	}
	if err := fdatasync(f); err != nil {
		return fmt.Errorf("sync change log: %w", err)
	}
	d.checkOverflowLocked()
	return nil
}

// redo applies records to the image again, in log order, and syncs it.
// Replaying a suffix of a complete log is idempotent: each byte ends with
// the last record that covers it.
func (d *Tracked) redo(f *os.File, recs []hrlRec) error {
	for _, r := range recs {
		var data []byte
		if r.kind == hrlWrite {
			data = make([]byte, r.length())
			if _, err := f.ReadAt(data, r.dataAt); err != nil {
				return fmt.Errorf("redo: read change log: %w", err)
			}
		}
		if err := applyHRLRecord(d.img, r, data); err != nil {
			return fmt.Errorf("redo: %w", err)
		}
	}
	if len(recs) > 0 {
		d.logger.Info().Str("disk", d.name).Int("records", len(recs)).Msg("change log replayed onto the image")
	}
	if err := fdatasync(d.img); err != nil {
		return fmt.Errorf("redo: sync image: %w", err)
	}
	return nil
}

// resetAtOpen replaces an untrusted log by one holding only a resync
// marker, so that the state survives restarts.
func (d *Tracked) resetAtOpen(reason string) error {
	d.logger.Warn().Str("disk", d.name).Str("reason", reason).Msg("disk needs resync")
	d.resync = reason
	return d.replaceLog(1, reason)
}

// replaceLog atomically replaces the log by a new one numbering cycles from
// baseSeq, holding an open record, or a resync marker if reason is set.
// The caller holds mu (or owns d alone, during open).
func (d *Tracked) replaceLog(baseSeq uint64, reason string) error {
	tmp := d.logPath + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("create change log: %w", err)
	}
	nd := &Tracked{log: f, logEnd: hrlHeaderSize}
	_, err = f.WriteAt(encodeHRLHeader(hrlHeader{diskSize: d.size, baseSeq: baseSeq}), 0)
	if err == nil && reason != "" {
		_, err = nd.appendRecord(hrlResync, 0, 0, 0, []byte(reason))
	} else if err == nil {
		_, err = nd.appendRecord(hrlOpen, 0, 0, uint64(time.Now().UnixNano()), []byte(d.boot))
	}
	if err == nil {
		err = fdatasync(f)
	}
	if err == nil {
		err = os.Rename(tmp, d.logPath)
	}
	if err == nil {
		err = SyncDir(filepath.Dir(d.logPath))
	}
	if err != nil {
		return errors.Join(fmt.Errorf("write change log: %w", err), f.Close())
	}
	d.swapLog(f, nd.logEnd)
	d.baseSeq, d.nextSeq = baseSeq, baseSeq
	d.closed, d.open = nil, nil
	return nil
}

// swapLog installs a new log file and closes the old one.
func (d *Tracked) swapLog(f *os.File, end int64) {
	d.filesMu.Lock()
	old := d.log
	d.log, d.logEnd = f, end
	d.filesMu.Unlock()
	if old != nil {
		if err := old.Close(); err != nil {
			d.logger.Warn().Err(err).Str("disk", d.name).Msg("close replaced change log")
		}
	}
}
