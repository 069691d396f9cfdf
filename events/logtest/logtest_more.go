package logtest

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
)

func errorsIs(err, target error) bool { return errors.Is(err, target) }

// testRetry: the same command id appended again, at the same or a stale
// version, even after the aggregate moved on, writes nothing and returns
// the first append's sequences.
func testRetry(t *testing.T, l events.Log) {
	agg := events.VMAgg("web01")
	first := mustAppend(t, l, agg, 0, "cmd-1", created("web01"), health(events.HealthNormal))
	for _, expected := range []uint64{0, first.Last(), 42} {
		res, err := l.Append(ctxFor(t), agg, expected, meta("cmd-1"), created("web01"), health(events.HealthNormal))
		require.NoError(t, err, "retry at %d", expected)
		require.True(t, res.Duplicate, "retry at %d", expected)
		require.Equal(t, first.Seqs, res.Seqs, "retry at %d", expected)
	}
	single := mustAppend(t, l, agg, first.Last(), "cmd-2", health(events.HealthWarning))
	res, err := l.Append(ctxFor(t), agg, single.Last(), meta("cmd-2"), health(events.HealthWarning))
	require.NoError(t, err)
	require.True(t, res.Duplicate)
	require.Equal(t, single.Seqs, res.Seqs)

	// The aggregate moves on; a late retry of the first command is still
	// recognised.
	mustAppend(t, l, agg, single.Last(), "cmd-3", health(events.HealthCritical))
	res, err = l.Append(ctxFor(t), agg, 0, meta("cmd-1"), created("web01"), health(events.HealthNormal))
	require.NoError(t, err)
	require.True(t, res.Duplicate)
	require.Equal(t, first.Seqs, res.Seqs)

	require.Len(t, mustLoad(t, l, agg), 4, "every command appended once")
	require.Equal(t, uint64(4), lastSeq(t, l))

	// The same command id on another aggregate is another append.
	other := mustAppend(t, l, events.VMAgg("web02"), 0, "cmd-1", created("web02"))
	require.Equal(t, []uint64{5}, other.Seqs)
}

// testAtomic: a multi-event append that fails fails as a whole.
func testAtomic(t *testing.T, l events.Log) {
	agg := events.VMAgg("web01")
	res := mustAppend(t, l, agg, 0, "cmd-1", created("web01"), health("a"), health("b"))
	require.Equal(t, []uint64{1, 2, 3}, res.Seqs)

	_, err := l.Append(ctxFor(t), agg, 1, meta("cmd-2"), health("c"), health("d"), health("e"))
	require.ErrorIs(t, err, events.ErrConflict)
	_, err = l.Append(ctxFor(t), agg, 3, meta("cmd-3"), health("c"), events.SiteRegisteredData{Name: "x"}, health("e"))
	require.ErrorIs(t, err, events.ErrUnknownType)
	_, err = l.Append(ctxFor(t), agg, 3, meta("cmd-4"), health("c"), nil)
	require.Error(t, err)

	recs := mustLoad(t, l, agg)
	require.Len(t, recs, 3)
	require.Equal(t, uint64(3), lastSeq(t, l))
	for i, r := range recs {
		require.Equal(t, i, r.Index)
		require.Equal(t, "cmd-1", r.Meta.CommandID)
	}
	res = mustAppend(t, l, agg, 3, "cmd-5", health("c"), health("d"))
	require.Equal(t, []uint64{4, 5}, res.Seqs)
}

// testReadBack: interleaved appends to several aggregates load back per
// aggregate, in order, with their indexes.
func testReadBack(t *testing.T, l events.Log) {
	aggs := []events.Aggregate{events.VMAgg("web01"), events.VMAgg("web-01"), events.VMAgg("web01x"), events.SiteAgg("web01")}
	versions := make([]uint64, len(aggs))
	for round := range 4 {
		for i, agg := range aggs {
			evs := []events.Data{health(fmt.Sprintf("r%d", round)), health(fmt.Sprintf("r%d-b", round))}
			if agg.Kind == events.KindSite {
				evs = []events.Data{events.SiteRegisteredData{Name: fmt.Sprintf("r%d", round)}}
			}
			res := mustAppend(t, l, agg, versions[i], fmt.Sprintf("cmd-%d-%d", round, i), evs...)
			versions[i] = res.Last()
		}
	}
	for i, agg := range aggs {
		recs := mustLoad(t, l, agg)
		require.NotEmpty(t, recs)
		var prev uint64
		for j, r := range recs {
			require.Equal(t, agg, r.Aggregate)
			require.Greater(t, r.Seq, prev)
			prev = r.Seq
			if agg.Kind == events.KindVM {
				require.Len(t, recs, 8)
				require.Equal(t, j%2, r.Index)
				require.Equal(t, health(fmt.Sprintf("r%d%s", j/2, map[int]string{0: "", 1: "-b"}[j%2])), r.Data)
			}
		}
		require.Equal(t, versions[i], prev)
	}
}
