package projections

import (
	"bytes"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/siterecovery/siterecovery/events"
)

// Recovery points live apart from their VM, one value each under
// <vm> 0x00 <sequence of the event that created it>, so that a VM with
// hundreds of points costs one small write per new point, not a rewrite of
// all of them. The VM's fold (events.VM.Apply) still decides which points
// exist: the runner hands it the VM's current point ids, lets it apply the
// event, and writes the difference.
var bucketPoints = []byte("points")

// pointList is a VM's points as the runner knows them: the ids and the key
// of each, in order, and the list handed to Apply (ids only; Apply may
// change it in place). The runner keeps them in memory across batches,
// since it is the only writer.
type pointList struct {
	ids  []string
	keys [][]byte
	pts  []events.RecoveryPoint
}

func pointPrefix(vm string) []byte { return append([]byte(vm), 0) }

func pointKey(vm string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(pointPrefix(vm), seq)
}

// loadPoints returns the VM's point list, from the runner's memory or the
// file.
func (b *batch) loadPoints(vm string) (*pointList, error) {
	if pl, ok := b.points[vm]; ok {
		return pl, nil
	}
	pl := &pointList{}
	prefix := pointPrefix(vm)
	c := b.tx.Bucket(bucketPoints).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		rp, err := decodePoint(v)
		if err != nil {
			return nil, fmt.Errorf("points/%q: %w", k, err)
		}
		pl.ids = append(pl.ids, rp.ID)
		pl.pts = append(pl.pts, events.RecoveryPoint{ID: rp.ID})
		pl.keys = append(pl.keys, bytes.Clone(k))
	}
	b.points[vm] = pl
	return pl, nil
}

// applyVM folds r into the VM's read model and its points.
func (b *batch) applyVM(r events.Record) error {
	m, err := load[vmModel](b, bucketVMs, r.Aggregate.ID)
	if err != nil {
		return err
	}
	pl, err := b.loadPoints(r.Aggregate.ID)
	if err != nil {
		return err
	}
	m.VM.RecoveryPoints = pl.pts
	m.Apply(r)
	after := m.VM.RecoveryPoints
	m.VM.RecoveryPoints = nil
	if len(after) == len(pl.pts) && (len(after) == 0 || &after[0] == &pl.pts[0]) {
		return nil // untouched
	}
	return b.syncPoints(r, pl, after)
}

// syncPoints writes the difference between the list before (pl) and after
// Apply. Apply only removes points and appends new ones, so the points
// kept are a subsequence of the old list, in order, followed by the new.
func (b *batch) syncPoints(r events.Record, pl *pointList, after []events.RecoveryPoint) error {
	bk := b.tx.Bucket(bucketPoints)
	kept := len(pl.ids)
	if !pl.isPrefixOf(after) {
		var err error
		if kept, err = pl.removeMissing(bk, after); err != nil {
			return err
		}
	}
	for n, rp := range after[kept:] {
		// One event makes at most one point; n keeps keys unique anyway.
		key := pointKey(r.Aggregate.ID, r.Seq+uint64(n))
		if err := bk.Put(key, encodePoint(rp)); err != nil {
			return fmt.Errorf("write point %s: %w", rp.ID, err)
		}
		pl.add(rp.ID, key)
	}
	return nil
}

// removeMissing deletes the points that are not in after, in place, and
// returns how many of after it kept.
func (pl *pointList) removeMissing(bk *bolt.Bucket, after []events.RecoveryPoint) (int, error) {
	j, w := 0, 0
	for i, id := range pl.ids {
		if j < len(after) && after[j].ID == id {
			pl.ids[w], pl.keys[w] = id, pl.keys[i]
			w, j = w+1, j+1
			continue
		}
		if err := bk.Delete(pl.keys[i]); err != nil {
			return 0, fmt.Errorf("delete point %q: %w", pl.keys[i], err)
		}
	}
	pl.ids, pl.keys = pl.ids[:w], pl.keys[:w]
	// after may share pl.pts' array (Apply deletes in place): rewrite it
	// only now that after was read.
	pl.pts = pl.pts[:0]
	for _, id := range pl.ids {
		pl.pts = append(pl.pts, events.RecoveryPoint{ID: id})
	}
	return j, nil
}

// isPrefixOf reports whether after starts with every point of pl: Apply
// only appended.
func (pl *pointList) isPrefixOf(after []events.RecoveryPoint) bool {
	if len(after) < len(pl.ids) {
		return false
	}
	for i, id := range pl.ids {
		if after[i].ID != id {
			return false
		}
	}
	return true
}

func (pl *pointList) add(id string, key []byte) {
	pl.ids = append(pl.ids, id)
	pl.keys = append(pl.keys, key)
	pl.pts = append(pl.pts, events.RecoveryPoint{ID: id})
}

// readPoints returns a VM's points from the file, in order.
func readPoints(tx *bolt.Tx, vm string) ([]events.RecoveryPoint, error) {
	var out []events.RecoveryPoint
	prefix := pointPrefix(vm)
	c := tx.Bucket(bucketPoints).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		rp, err := decodePoint(v)
		if err != nil {
			return nil, fmt.Errorf("points/%q: %w", k, err)
		}
		out = append(out, rp)
	}
	return out, nil
}
