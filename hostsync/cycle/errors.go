package cycle

import (
	"errors"
	"fmt"
)

// Errors of cycles refused by who assembles or applies them (the batch
// assembler, the replica). Match them with errors.Is; SeqError and GapError
// with errors.As.
var (
	// ErrBatchGap means a batch arrived after a missing batch of its
	// cycle. Nothing was applied; the missing batches must be sent again.
	ErrBatchGap = errors.New("gap in the batches of a cycle")

	// ErrStaleEpoch means a cycle or batch belongs to an epoch other than
	// the one expected (an older one is fenced off for good).
	ErrStaleEpoch = errors.New("epoch not expected")

	// ErrSeqGap means a cycle's sequence is ahead of the next expected
	// one: a cycle is missing. Nothing was applied.
	ErrSeqGap = errors.New("cycle sequence gap")

	// ErrApplied means a cycle (or a batch of it) was applied
	// already: a redelivery, safe to acknowledge and drop.
	ErrApplied = errors.New("cycle already applied")

	// ErrInvalid means a cycle is not well formed (CheckExtent) or does
	// not fit where it is applied: another VM, an unknown disk, an extent
	// out of the disk's bounds, or data that does not match its length.
	ErrInvalid = errors.New("bad cycle")
)

// SeqError reports a cycle (or batch) refused for its epoch or sequence.
// It unwraps to ErrStaleEpoch, ErrSeqGap or ErrApplied.
type SeqError struct {
	VM                  string
	WantEpoch, GotEpoch uint64
	WantSeq, GotSeq     uint64
	Err                 error
}

func (e *SeqError) Error() string {
	return fmt.Sprintf("vm %s: cycle %d/%d refused, expected %d/%d: %v",
		e.VM, e.GotEpoch, e.GotSeq, e.WantEpoch, e.WantSeq, e.Err)
}

// Unwrap returns ErrStaleEpoch, ErrSeqGap or ErrApplied.
func (e *SeqError) Unwrap() error { return e.Err }

// GapError reports a batch that arrived while an earlier batch of its
// cycle is missing. It unwraps to ErrBatchGap.
type GapError struct {
	VM        string
	Cycle     uint64
	WantIndex int
	GotIndex  int
}

func (e *GapError) Error() string {
	return fmt.Sprintf("vm %s cycle %d: batch %d arrived, expected %d", e.VM, e.Cycle, e.GotIndex, e.WantIndex)
}

// Unwrap returns ErrBatchGap.
func (e *GapError) Unwrap() error { return ErrBatchGap }
