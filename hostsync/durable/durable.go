package durable

import (
	"os"
	"path/filepath"
)

// WriteFile replaces path with data so that a crash leaves either the old
// file or the new one, whole: it writes path+".tmp", fsyncs it, renames it
// over path and fsyncs the directory. A crash before the rename may leave
// the temp file behind; the owner of the directory removes it when it opens.
func WriteFile(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return SyncParentDir(path)
}

// SyncParentDir fsyncs the directory holding path, so that a file created,
// renamed or removed there stays so across a crash.
func SyncParentDir(path string) error {
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
