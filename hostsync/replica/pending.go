package replica

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/siterecovery/siterecovery/hostsync/durable"
)

// The pending record, pending.json: the commit record of an apply or a
// revert under way, JSON, written crash-safely before the images change
// and removed once the state file records the outcome.
//
//	{"kind": "apply", "point": {"id": "rp-2-431", ...}, "undo": "58.undo"}
//	{"kind": "revert", "target": "rp-2-400"}
//
// It has no version field: it is versioned with the state file's format
// (stateVersion, state.go), and Open reads it only after it accepted the
// state file. A record of a kind this build does not know is refused with
// ErrVersion; one that does not decode with ErrState.
const pendingFile = "pending.json"

// pendingOp is pending.json: the commit record of an apply or a revert
// under way. An apply found pending at open is rolled back with its undo
// file (unless the state already names its point); a revert is redone.
type pendingOp struct {
	Kind   string `json:"kind"` // opApply or opRevert
	Point  Point  `json:"point,omitzero"`
	Undo   string `json:"undo,omitempty"`
	Target string `json:"target,omitempty"`
}

const (
	opApply  = "apply"
	opRevert = "revert"
)

// readPending reads the pending record; ok is false when there is none.
func (r *Replica) readPending() (p pendingOp, ok bool, err error) {
	buf, err := os.ReadFile(filepath.Join(r.dir, pendingFile))
	if errors.Is(err, os.ErrNotExist) {
		return pendingOp{}, false, nil
	}
	if err != nil {
		return pendingOp{}, false, err
	}
	if err := json.Unmarshal(buf, &p); err != nil {
		return pendingOp{}, false, fmt.Errorf("%w: %s: %w", ErrState, pendingFile, err)
	}
	return p, true, nil
}

// commit makes the operation durable as pending: from here a crash is
// rolled back (apply) or finished (revert) at the next open. On error
// nothing is pending.
func (r *Replica) commit(p pendingOp) error {
	path := filepath.Join(r.dir, pendingFile)
	if err := writeJSONSynced(path, p); err != nil {
		os.Remove(path)
		return noSpace(StageCommitted, err)
	}
	return nil
}

// done removes the pending record of a durable operation, durably.
func (r *Replica) done(after string) error { return r.removePending(after, true) }

// doneApply removes the pending record of an apply whose state file names
// its point. The removal need not reach the disk: a record found at open
// whose point is the latest is merely removed then (recoverPending), and
// the next operation's record replaces it.
func (r *Replica) doneApply() error { return r.removePending(StageStateWritten, false) }

func (r *Replica) removePending(after string, synced bool) error {
	if after != "" {
		if err := r.stage(after); err != nil {
			return &StageError{Stage: after, Err: fmt.Errorf("%w: %w", errDurable, err)}
		}
	}
	if err := os.Remove(filepath.Join(r.dir, pendingFile)); err != nil {
		return &StageError{Stage: StageDone, Err: fmt.Errorf("%w: %w", errDurable, err)}
	}
	if !synced {
		return nil
	}
	if err := durable.SyncParentDir(filepath.Join(r.dir, pendingFile)); err != nil {
		return &StageError{Stage: StageDone, Err: fmt.Errorf("%w: %w", errDurable, err)}
	}
	return nil
}

func writeJSONSynced(path string, v any) error {
	buf, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return durable.WriteFile(path, buf)
}
