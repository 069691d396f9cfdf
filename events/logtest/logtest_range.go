package logtest

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
)

// testLoadAfter: a RangeLoader returns exactly the aggregate's events above
// the given sequence, whatever other aggregates appended in between, and
// nothing past its end; events.LoadAfter agrees with it.
func testLoadAfter(t *testing.T, l events.Log) {
	rl, ok := l.(events.RangeLoader)
	if !ok {
		t.Skip("the log is not an events.RangeLoader")
	}
	agg, other := events.VMAgg("web01"), events.VMAgg("web01x")
	var v, vo uint64
	for i := range 6 {
		v = mustAppend(t, l, agg, v, fmt.Sprintf("a%d", i), health(fmt.Sprintf("h%d", i)), health(fmt.Sprintf("h%d-b", i))).Last()
		vo = mustAppend(t, l, other, vo, fmt.Sprintf("o%d", i), health(fmt.Sprintf("o%d", i))).Last()
	}
	all := mustLoad(t, l, agg)
	require.Len(t, all, 12)
	seqs := []uint64{0, 1, all[0].Seq, all[0].Seq + 1, all[5].Seq, all[6].Seq - 1, all[11].Seq, vo, vo + 100}
	for _, after := range seqs {
		got, err := rl.LoadAfter(ctxFor(t), agg, after)
		require.NoError(t, err)
		var want []events.Record
		for _, r := range all {
			if r.Seq > after {
				want = append(want, r)
			}
		}
		require.Equal(t, want, got, "after %d", after)
		viaHelper, err := events.LoadAfter(ctxFor(t), l, agg, after)
		require.NoError(t, err)
		require.Equal(t, want, viaHelper, "events.LoadAfter after %d", after)
	}
	none, err := rl.LoadAfter(ctxFor(t), events.VMAgg("nobody"), 0)
	require.NoError(t, err)
	require.Empty(t, none)
	_, err = rl.LoadAfter(ctxFor(t), events.Aggregate{Kind: "nope", ID: "x"}, 0)
	require.ErrorIs(t, err, events.ErrInvalidToken)
}

// testLoadAfterSeesAppends: a load after the sequence a caller last saw
// returns what was appended since, in order, with the aggregate's true last
// sequence: enough to fold on top and append with that version.
func testLoadAfterSeesAppends(t *testing.T, l events.Log) {
	rl, ok := l.(events.RangeLoader)
	if !ok {
		t.Skip("the log is not an events.RangeLoader")
	}
	agg := events.VMAgg("db01")
	var seen uint64
	for round := range 5 {
		res := mustAppend(t, l, agg, seen, fmt.Sprintf("r%d", round), health("a"), health("b"))
		got, err := rl.LoadAfter(ctxFor(t), agg, seen)
		require.NoError(t, err)
		require.Len(t, got, 2)
		require.Equal(t, res.Seqs, []uint64{got[0].Seq, got[1].Seq})
		seen = got[1].Seq
		tail, err := rl.LoadAfter(ctxFor(t), agg, seen)
		require.NoError(t, err)
		require.Empty(t, tail)
	}
}
