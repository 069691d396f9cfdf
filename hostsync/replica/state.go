package replica

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/hostsync/durable"
)

// The state file, replica.json, format version 1 (stateVersion): JSON,
// written crash-safely (package durable) each time the points change.
//
//	{"format": 1, "vm": "web01", "disks": [{"name": "sda", "size": 4096}],
//	 "epoch": 2, "seq": 431, "fence": 0, "next_undo": 58, "gen": 77,
//	 "points": [{"id": "rp-2-430", "time": "...", "app_consistent": false,
//	             "epoch": 2, "cycle": 430, "roots": {"sda": "<hex>"},
//	             "undo": "57.undo"}]}
//
// epoch and seq are the last applied cycle, fence the epoch below which
// cycles are refused (Fence), next_undo the number of the next undo file, gen the count of
// changes of the images' contents (the hash tree files are stamped
// gen-<gen>), points the retained points, oldest first, each with the undo
// file that turns the images at the next point back into it (none for the
// oldest).
//
// The format number versions the replica directory's JSON files, this one
// and the pending record (pending.go), which Open reads only after it
// accepted this one: a new layout of either takes a new number. A state
// file of another format is refused with ErrVersion, never read as this
// one; the undo files carry a version of their own (undo.go).
const (
	stateFile    = "replica.json"
	stateVersion = 1
)

// replicaState is the durable state, replica.json.
type replicaState struct {
	Format   int               `json:"format"`
	VM       string            `json:"vm"`
	Disks    []events.DiskSpec `json:"disks"`
	Epoch    uint64            `json:"epoch"`
	Seq      uint64            `json:"seq"`
	Fence    uint64            `json:"fence,omitempty"`
	NextUndo uint64            `json:"next_undo"`
	// Gen counts the changes of the images' contents (applies, reverts);
	// hash tree files are stamped with it.
	Gen    uint64        `json:"gen"`
	Points []pointRecord `json:"points"`
}

// pointRecord is a retained point and its undo file (none for the oldest).
type pointRecord struct {
	Point
	Undo string `json:"undo,omitempty"`
}

// loadState reads the state file, or creates it in a new replica.
func (r *Replica) loadState() error {
	buf, err := os.ReadFile(filepath.Join(r.dir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		r.state = replicaState{Format: stateVersion, VM: r.vm, Disks: r.diskSpecs(), NextUndo: 1}
		return r.saveState()
	}
	if err != nil {
		return err
	}
	if err := checkStateVersion(buf); err != nil {
		return err
	}
	if err := json.Unmarshal(buf, &r.state); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrState, stateFile, err)
	}
	if r.state.VM != r.vm || !sameDisks(r.state.Disks, r.diskSpecs()) {
		return fmt.Errorf("%w: %s holds vm %q disks %v, opened for %q %v", ErrState, r.dir, r.state.VM, r.state.Disks, r.vm, r.diskSpecs())
	}
	return nil
}

// checkStateVersion reads the format number alone, before the rest of the
// file is decoded as version 1.
func checkStateVersion(buf []byte) error {
	var head struct {
		Format int `json:"format"`
	}
	if err := json.Unmarshal(buf, &head); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrState, stateFile, err)
	}
	if head.Format != stateVersion {
		return fmt.Errorf("%w: %s: format %d, this build reads %d", ErrVersion, stateFile, head.Format, stateVersion)
	}
	return nil
}

func (r *Replica) diskSpecs() []events.DiskSpec {
	out := make([]events.DiskSpec, 0, len(r.order))
	for _, n := range r.order {
		out = append(out, r.disks[n])
	}
	return out
}

func sameDisks(a, b []events.DiskSpec) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func (r *Replica) saveState() error {
	buf, err := json.MarshalIndent(r.state, "", "  ")
	if err != nil {
		return err
	}
	return durable.WriteFile(filepath.Join(r.dir, stateFile), buf)
}

func (r *Replica) saveStateAs(next replicaState) error {
	prev := r.state
	r.state = next
	r.version++
	if err := r.saveState(); err != nil {
		r.state = prev
		return err
	}
	return nil
}
