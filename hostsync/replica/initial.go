package replica

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/siterecovery/siterecovery/hostsync/cycle"
	"github.com/siterecovery/siterecovery/hostsync/durable"
)

// The first copy of an initial replication takes a shorter path than a
// cycle applied on top of a recovery point. While a replica holds no point
// there is nothing an interrupted chunk could damage, and an Initial cycle
// is the source's bytes of its ranges, so a chunk delivered again is
// simply written again: no undo file is needed, and the chunks need not
// reach the disk one by one. ApplyInitial writes a chunk into the page
// cache; SyncInitial makes every chunk written since the last sync durable
// at once (images synced, trees saved, state recorded), and only then are
// their messages acknowledged.
//
// The hash trees are a cache of the images (stamped with the state's
// generation). The first ApplyInitial after a sync removes the tree files,
// durably, before it writes: a crash before the next SyncInitial leaves
// images that may hold chunks the state does not record, and the trees are
// rebuilt from the images at the next open instead of trusting a file that
// no longer describes them.

// ApplyInitial writes an Initial cycle into the images of a replica that
// holds no recovery point (FirstCopy), without an undo file and without
// waiting for the disk. It counts as applied at once (LastApplied), and is
// durable after SyncInitial. The cycle is checked as Apply checks it; on an
// error the replica goes back to its last durable state (what SyncInitial
// last recorded) and the chunks since are applied again when delivered
// again.
func (r *Replica) ApplyInitial(ctx context.Context, c cycle.Cycle) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.recovered(); err != nil {
		return err
	}
	if !c.Initial || len(r.state.Points) > 0 {
		return fmt.Errorf("%w: ApplyInitial of cycle %d (initial %t) on a replica with %d points", cycle.ErrInvalid, c.Seq, c.Initial, len(r.state.Points))
	}
	if err := r.checkCycle(c); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := r.writeInitial(c); err != nil {
		return errors.Join(asNoSpace(err), r.backToDurable())
	}
	r.state.Epoch, r.state.Seq = c.Epoch, c.Seq
	return nil
}

func (r *Replica) writeInitial(c cycle.Cycle) error {
	r.imageWrites++
	if !r.unsynced {
		if err := r.dropTreeFiles(); err != nil {
			return err
		}
		r.unsynced = true
	}
	for _, e := range c.Extents {
		var data []byte
		if !e.Zero {
			data = e.Data
		}
		if err := imageWriteRange(r.images[e.Disk], e.Offset, e.Length, data); err != nil {
			return err
		}
	}
	for _, name := range r.order {
		if err := r.trees[name].Update(r.images[name], extentsOf(c.Extents, name)); err != nil {
			return err
		}
	}
	return nil
}

// dropTreeFiles removes the trees' files durably.
func (r *Replica) dropTreeFiles() error {
	for _, name := range r.order {
		if err := os.Remove(r.treePath(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return durable.SyncParentDir(filepath.Join(r.dir, stateFile))
}

// FirstCopy says whether the replica holds no recovery point: Initial
// cycles then go through ApplyInitial.
func (r *Replica) FirstCopy() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.state.Points) == 0
}

// SyncInitial makes the cycles ApplyInitial wrote durable. On an error
// the replica goes back to its last durable state.
func (r *Replica) SyncInitial() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	if !r.unsynced {
		return nil
	}
	err := r.syncInitial()
	if err != nil {
		return errors.Join(asNoSpace(err), r.backToDurable())
	}
	return nil
}

func (r *Replica) syncInitial() error {
	if err := r.syncAllImages(); err != nil {
		return err
	}
	next := r.state
	next.Gen++
	for _, name := range r.order {
		if err := r.trees[name].SaveCache(r.treePath(name), genStamp(next.Gen)); err != nil {
			return err
		}
	}
	if err := r.saveStateAs(next); err != nil {
		return err
	}
	r.unsynced = false
	return nil
}

// backToDurable reloads the state last recorded and rebuilds the trees
// from the images at the next operation.
func (r *Replica) backToDurable() error {
	r.unsynced = false
	r.broken = true
	if err := r.loadState(); err != nil {
		return fmt.Errorf("reload replica state: %w", err)
	}
	return nil
}
