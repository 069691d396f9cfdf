package replica

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/hostsync/cycle"
	"github.com/siterecovery/siterecovery/hostsync/disk"
	"github.com/siterecovery/siterecovery/hostsync/hashtree"
)

// Replica is the recovery host's copy of one VM's disks: one plain sparse
// raw image per disk, dir/<disk>.img, always at the latest recovery point,
// plus the undo data that restores every older retained point, a hash tree
// per disk and a state file. A cycle applies whole or not at all, across a
// crash at any instant. Safe for concurrent use: applies, reverts and
// pruning are serialised; reads (materialize, test copies) run alongside
// each other.
type Replica struct {
	dir    string
	vm     string
	disks  map[string]events.DiskSpec
	order  []string
	log    zerolog.Logger
	hook   func(stage string) error
	mu     sync.RWMutex
	state  replicaState
	images map[string]*os.File
	trees  map[string]*hashtree.Tree
	undoMu sync.Mutex // guards undos, filled by concurrent readers
	undos  map[string]*undoFile
	pins   map[string]int
	// version counts changes of the points in memory (test copies'
	// indexes follow it).
	version uint64
	// broken is set when an apply failed after its commit and could not
	// be rolled back in process: the next operation recovers first.
	broken bool
	// unsynced is set while chunks ApplyInitial wrote are not durable
	// (initial.go).
	unsynced bool
	closed   bool
	// imageWrites counts the operations that wrote the images; prep is
	// the undo data of the cycle being received (prep.go), valid
	// while imageWrites stays as it began.
	imageWrites uint64
	prep        *undoPrep
	// preimaged counts the applies that used a prepared undo file.
	preimaged uint64
}

// Options tune a replica. The zero value is the default.
type Options struct {
	// Hook, when set, is called after each stage of an apply or revert
	// (see the Stage constants) and again within stages that touch
	// several files. An error it returns fails the operation at that
	// stage; tests use it to inject crashes and full disks.
	Hook func(stage string) error
}

// Stages of an apply and a revert, as passed to Options.Hook.
const (
	StageReserved     = "reserved"      // image blocks allocated for the new data
	StageUndoWritten  = "undo-written"  // undo file synced, nothing committed
	StageCommitted    = "committed"     // pending record synced: a crash now rolls back (apply) or forward (revert)
	StageImageWritten = "image-written" // one image written, not yet synced
	StageImagesSynced = "images-synced" // every image written and synced
	StageTreesSaved   = "trees-saved"   // hash trees saved
	StageStateWritten = "state-written" // state file names the new point: the operation is durable
	StageDone         = "done"          // pending record removed

	StagePruneMerged = "prune-merged" // a dropped point's undo data merged into a new file, not yet recorded
	StagePruneSaved  = "prune-saved"  // state without the dropped point written, old undo files not yet removed
)

// undoDir is the directory of the undo files, in the replica's.
const undoDir = "undo"

// Open opens (or creates) the replica of vm in dir with the default
// options.
func Open(dir string, vm string, disks []events.DiskSpec, logger zerolog.Logger) (*Replica, error) {
	return OpenWithOptions(dir, vm, disks, logger, Options{})
}

// OpenWithOptions opens (or creates) the replica of vm in dir. An
// operation interrupted by a crash is finished or rolled back first: the
// replica opens at a retained point, bit for bit.
func OpenWithOptions(dir, vm string, disks []events.DiskSpec, logger zerolog.Logger, opts Options) (*Replica, error) {
	if err := checkReplicaArgs(vm, disks); err != nil {
		return nil, err
	}
	r := &Replica{
		dir: dir, vm: vm, disks: map[string]events.DiskSpec{}, hook: opts.Hook,
		log:    logger.With().Str("component", "replica").Str("vm", vm).Logger(),
		images: map[string]*os.File{}, trees: map[string]*hashtree.Tree{}, undos: map[string]*undoFile{}, pins: map[string]int{},
	}
	for _, d := range disks {
		r.disks[d.Name] = d
		r.order = append(r.order, d.Name)
	}
	if err := r.open(); err != nil {
		r.closeFiles()
		return nil, err
	}
	return r, nil
}

func checkReplicaArgs(vm string, disks []events.DiskSpec) error {
	if vm == "" || len(disks) == 0 {
		return fmt.Errorf("%w: vm %q with %d disks", ErrState, vm, len(disks))
	}
	seen := map[string]bool{}
	for _, d := range disks {
		if d.Name == "" || strings.ContainsAny(d.Name, "/\\") || d.Name[0] == '.' || d.Size < 0 || seen[d.Name] {
			return fmt.Errorf("%w: disk %q of %d bytes", ErrState, d.Name, d.Size)
		}
		seen[d.Name] = true
	}
	return nil
}

func (r *Replica) open() error {
	if err := os.MkdirAll(filepath.Join(r.dir, undoDir), 0o755); err != nil {
		return err
	}
	if err := r.loadState(); err != nil {
		return err
	}
	for _, name := range r.order {
		f, err := disk.OpenImage(r.ImagePath(name), r.disks[name].Size)
		var sizeErr *disk.ImageSizeError
		if errors.As(err, &sizeErr) {
			err = fmt.Errorf("%w: %w", ErrState, err)
		}
		if err != nil {
			return err
		}
		r.images[name] = f
	}
	if err := r.recoverPending(); err != nil {
		return err
	}
	if err := r.loadTrees(); err != nil {
		return err
	}
	return r.removeOrphans()
}

// ImagePath is the raw image of a disk at the latest recovery point.
func (r *Replica) ImagePath(disk string) string {
	return filepath.Join(r.dir, disk+".img")
}

func (r *Replica) treePath(disk string) string {
	return filepath.Join(r.dir, disk+".hashtree")
}

func (r *Replica) undoPath(name string) string {
	return filepath.Join(r.dir, undoDir, name)
}

// LastApplied is the epoch and sequence of the last applied cycle (0, 0
// before the first).
func (r *Replica) LastApplied() (epoch, seq uint64) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.state.Epoch, r.state.Seq
}

// Roots are the current hash tree roots of the disks (hex).
func (r *Replica) Roots() map[string]string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.roots()
}

func (r *Replica) roots() map[string]string {
	out := map[string]string{}
	for name, t := range r.trees {
		out[name] = t.Root()
	}
	return out
}

// HashTree is a copy of a disk's current hash tree, for verify and resync.
func (r *Replica) HashTree(disk string) (*hashtree.Tree, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	t, ok := r.trees[disk]
	if !ok {
		return nil, fmt.Errorf("%w: no disk %q", cycle.ErrInvalid, disk)
	}
	return hashtree.FromLeaves(t.Size(), t.LeafHashes())
}

// Fence refuses, from now on and durably, every cycle of an epoch below
// epoch: call it when the VM's epoch rises.
func (r *Replica) Fence(ctx context.Context, epoch uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.usable(); err != nil {
		return err
	}
	if epoch <= r.state.Fence {
		return nil
	}
	r.state.Fence = epoch
	return r.saveState()
}

// Close closes the replica's files. Safe twice.
func (r *Replica) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	r.dropPrep()
	var err error
	if r.unsynced {
		err = r.syncInitial()
	}
	return errors.Join(err, r.closeFiles())
}

func (r *Replica) closeFiles() error {
	var first error
	for _, f := range r.images {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	for _, u := range r.undos {
		if err := u.close(); err != nil && first == nil {
			first = err
		}
	}
	r.undos = map[string]*undoFile{}
	return first
}

// usable reports whether the replica can serve an operation, recovering an
// operation that failed half way first, and making the chunks ApplyInitial
// wrote durable (no other operation records a state over them). Callers
// hold mu for writing.
func (r *Replica) usable() error {
	if err := r.recovered(); err != nil {
		return err
	}
	if !r.unsynced {
		return nil
	}
	if err := r.syncInitial(); err != nil {
		return errors.Join(asNoSpace(err), r.backToDurable())
	}
	return nil
}

// recovered is usable without the sync of initial chunks.
func (r *Replica) recovered() error {
	if r.closed {
		return ErrClosed
	}
	if !r.broken {
		return nil
	}
	if err := r.recoverPending(); err != nil {
		return fmt.Errorf("replica recovery: %w", err)
	}
	if err := r.rebuildTrees(); err != nil {
		return err
	}
	r.broken = false
	return nil
}

func (r *Replica) stage(name string) error {
	if r.hook == nil {
		return nil
	}
	return r.hook(name)
}

// noSpace maps ENOSPC to ErrNoSpace.
func noSpace(stage string, err error) error {
	if errors.Is(err, syscall.ENOSPC) {
		return &StageError{Stage: stage, Err: fmt.Errorf("%w: %w", ErrNoSpace, err)}
	}
	return &StageError{Stage: stage, Err: err}
}
