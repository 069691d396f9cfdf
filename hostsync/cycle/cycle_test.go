package cycle

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCheckExtent(t *testing.T) {
	good := []Extent{
		{Disk: "sda", Offset: 4096, Length: 3, Data: []byte("abc")},
		{Disk: "sda", Offset: 0, Length: 1 << 20, Zero: true},
		{Disk: strings.Repeat("d", MaxNameLen), Length: 0},
	}
	for _, e := range good {
		require.NoError(t, CheckExtent(e), "%+v", e)
	}
	bad := []Extent{
		{Disk: "", Length: 1, Data: []byte("a")},
		{Disk: strings.Repeat("d", MaxNameLen+1), Length: 1, Data: []byte("a")},
		{Disk: "sda", Offset: -1, Length: 1, Data: []byte("a")},
		{Disk: "sda", Offset: math.MaxInt64, Length: 1, Data: []byte("a")},
		{Disk: "sda", Length: 1, Zero: true, Data: []byte("a")},
		{Disk: "sda", Length: 2, Data: []byte("a")},
	}
	for _, e := range bad {
		require.ErrorIs(t, CheckExtent(e), ErrInvalid, "%+v", e)
	}
}

func TestSequenceErrorsUnwrap(t *testing.T) {
	for _, want := range []error{ErrStaleEpoch, ErrSeqGap, ErrApplied} {
		err := error(&SeqError{VM: "web01", WantEpoch: 2, GotEpoch: 1, WantSeq: 5, GotSeq: 4, Err: want})
		require.ErrorIs(t, err, want)
		var seq *SeqError
		require.True(t, errors.As(err, &seq))
		require.Contains(t, err.Error(), "vm web01: cycle 1/4 refused, expected 2/5")
	}
	err := error(&GapError{VM: "web01", Cycle: 3, WantIndex: 1, GotIndex: 2})
	require.ErrorIs(t, err, ErrBatchGap)
	require.NotErrorIs(t, err, ErrSeqGap)
}
