package replica

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/siterecovery/siterecovery/hostsync/cycle"
	"github.com/siterecovery/siterecovery/hostsync/hashtree"
)

// recoverPending finishes or undoes the operation named by pending.json,
// if any: an apply whose point the state does not name is rolled back, a
// revert is redone.
func (r *Replica) recoverPending() error {
	p, ok, err := r.readPending()
	if err != nil || !ok {
		return err
	}
	switch p.Kind {
	case opApply:
		if r.latestIs(p.Point.ID) && r.state.Epoch == p.Point.Epoch && r.state.Seq == p.Point.Cycle {
			r.log.Info().Str("point", p.Point.ID).Msg("apply was durable, removing its pending record")
			return r.done("")
		}
		r.log.Warn().Str("point", p.Point.ID).Msg("rolling back an interrupted apply")
		return r.rollback(p)
	case opRevert:
		r.log.Warn().Str("point", p.Target).Msg("finishing an interrupted revert")
		return r.finishRevert(p)
	}
	return fmt.Errorf("%w: pending operation %q", ErrVersion, p.Kind)
}

func (r *Replica) latestIs(id string) bool {
	n := len(r.state.Points)
	return n > 0 && r.state.Points[n-1].ID == id
}

// rollback restores the images from the undo file of an apply that did
// not become durable, then rewrites the state and drops the pending record.
func (r *Replica) rollback(p pendingOp) error {
	r.imageWrites++
	u, err := openUndo(r.undoPath(p.Undo))
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: undo %s of a committed apply is missing", ErrState, p.Undo)
	}
	if err != nil {
		return err
	}
	defer u.close()
	for _, rec := range u.recs {
		f, ok := r.images[rec.disk]
		if !ok {
			return fmt.Errorf("%w: undo names disk %q", ErrState, rec.disk)
		}
		if err := copyUndoRec(f, u, rec); err != nil {
			return err
		}
	}
	if err := r.syncAllImages(); err != nil {
		return err
	}
	if err := r.retree(u.recs, r.state.Gen); err != nil {
		return err
	}
	if err := r.saveState(); err != nil {
		return err
	}
	if err := r.done(""); err != nil {
		return err
	}
	return os.Remove(r.undoPath(p.Undo))
}

func (r *Replica) syncAllImages() error {
	for _, name := range r.order {
		if err := r.images[name].Sync(); err != nil {
			return err
		}
	}
	return nil
}

// retree re-hashes the ranges of recs in the loaded trees, if loaded (at
// open they are loaded, and checked, afterwards).
func (r *Replica) retree(recs []undoRec, gen uint64) error {
	if len(r.trees) == 0 {
		return nil
	}
	byDisk := map[string][]cycle.Extent{}
	for _, rec := range recs {
		byDisk[rec.disk] = append(byDisk[rec.disk], cycle.Extent{Offset: rec.off, Length: rec.length})
	}
	for _, name := range r.order {
		if err := r.trees[name].Update(r.images[name], byDisk[name]); err != nil {
			return err
		}
		if err := r.trees[name].SaveCache(r.treePath(name), genStamp(gen)); err != nil {
			return err
		}
	}
	return nil
}

// loadTrees loads each disk's tree, rebuilding it from the image when the
// file is missing, damaged or stamped with another generation.
func (r *Replica) loadTrees() error {
	want := genStamp(r.state.Gen)
	for _, name := range r.order {
		t, stamp, err := hashtree.Load(r.treePath(name))
		if err == nil && stamp == want && t.Size() == r.disks[name].Size {
			r.trees[name] = t
			continue
		}
		if errors.Is(err, hashtree.ErrVersion) {
			r.log.Info().Err(err).Str("disk", name).Str("hash", hashtree.HashName).
				Msg("hash tree file of another version (an older build's hash): rebuilding it from the image")
		}
		if err := r.rebuildTree(name); err != nil {
			return err
		}
	}
	return nil
}

func (r *Replica) rebuildTrees() error {
	for _, name := range r.order {
		if err := r.rebuildTree(name); err != nil {
			return err
		}
	}
	return nil
}

func (r *Replica) rebuildTree(name string) error {
	r.log.Info().Str("disk", name).Msg("rebuilding hash tree from the image")
	t, err := hashtree.Build(r.images[name], r.disks[name].Size)
	if err != nil {
		return err
	}
	r.trees[name] = t
	return t.SaveCache(r.treePath(name), genStamp(r.state.Gen))
}

// removeOrphans deletes temp files and undo files no point names (left by
// a crash between writing a file and recording it).
func (r *Replica) removeOrphans() error {
	keep := map[string]bool{}
	for _, p := range r.state.Points {
		keep[p.Undo] = true
	}
	entries, err := os.ReadDir(filepath.Join(r.dir, undoDir))
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !keep[e.Name()] {
			if err := os.Remove(r.undoPath(e.Name())); err != nil {
				return err
			}
		}
	}
	top, err := os.ReadDir(r.dir)
	if err != nil {
		return err
	}
	for _, e := range top {
		if strings.HasSuffix(e.Name(), ".tmp") {
			if err := os.Remove(filepath.Join(r.dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}
