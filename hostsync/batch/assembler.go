package batch

import (
	"fmt"

	"github.com/siterecovery/siterecovery/hostsync/cycle"
)

// Assembler collects the batches of one VM's cycles, in batch order, and
// yields each cycle whole when its last batch arrives. It expects cycles in
// sequence (next = last applied + 1) at one epoch. Redelivered batches are
// ignored; a gap, another epoch or an unexpected cycle is refused with a
// cycle.SeqError or cycle.GapError and nothing is yielded. Not safe for concurrent use: one
// consumer goroutine owns it.
type Assembler struct {
	vm    string
	epoch uint64
	next  uint64
	parts []Batch
}

// NewAssembler expects batches of vm at epoch, starting with cycle next
// (the replica's last applied sequence + 1).
func NewAssembler(vm string, epoch, next uint64) *Assembler {
	return &Assembler{vm: vm, epoch: epoch, next: next}
}

// Reset drops any partial cycle and expects cycle next of epoch, e.g.
// after an apply failed and the replica's last applied point is known.
func (a *Assembler) Reset(epoch, next uint64) {
	a.epoch, a.next, a.parts = epoch, next, nil
}

// Epoch is the epoch the assembler expects.
func (a *Assembler) Epoch() uint64 { return a.epoch }

// Next is the cycle sequence the assembler expects.
func (a *Assembler) Next() uint64 { return a.next }

// Held is the number of batches of cycle Next held: the index of the batch
// it expects.
func (a *Assembler) Held() int { return len(a.parts) }

// Add takes one batch. It returns the whole cycle and true when b was the
// cycle's last batch, then expects the following cycle. A batch of an
// already yielded cycle, or already held, returns an error matching
// cycle.ErrApplied or nothing at all: both are safe to acknowledge.
func (a *Assembler) Add(b Batch) (cycle.Cycle, bool, error) {
	if err := a.check(b); err != nil {
		return cycle.Cycle{}, false, err
	}
	if b.Index < len(a.parts) {
		return cycle.Cycle{}, false, nil
	}
	if b.Index > len(a.parts) {
		return cycle.Cycle{}, false, &cycle.GapError{VM: a.vm, Cycle: b.Cycle, WantIndex: len(a.parts), GotIndex: b.Index}
	}
	a.parts = append(a.parts, b)
	if !b.Last {
		return cycle.Cycle{}, false, nil
	}
	c := a.cycle()
	a.parts = nil
	a.next++
	return c, true, nil
}

func (a *Assembler) check(b Batch) error {
	if b.VM != a.vm {
		return fmt.Errorf("%w: batch of vm %q on vm %q's stream", cycle.ErrInvalid, b.VM, a.vm)
	}
	seqErr := &cycle.SeqError{VM: a.vm, WantEpoch: a.epoch, GotEpoch: b.Epoch, WantSeq: a.next, GotSeq: b.Cycle}
	switch {
	case b.Epoch != a.epoch:
		seqErr.Err = cycle.ErrStaleEpoch
	case b.Cycle < a.next:
		seqErr.Err = cycle.ErrApplied
	case b.Cycle > a.next:
		seqErr.Err = cycle.ErrSeqGap
	default:
		return nil
	}
	return seqErr
}

func (a *Assembler) cycle() cycle.Cycle {
	last := a.parts[len(a.parts)-1]
	c := cycle.Cycle{
		VM: a.vm, Epoch: last.Epoch, Seq: last.Cycle, ClosedAt: last.ClosedAt,
		AppConsistent: last.AppConsistent, Initial: last.Initial, Roots: last.Roots, RootsHash: last.RootsHash,
	}
	for _, p := range a.parts {
		c.Extents = append(c.Extents, p.Extents...)
	}
	return c
}
