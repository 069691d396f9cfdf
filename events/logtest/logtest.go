package logtest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
)

// Timeout bounds every wait of the suite.
const Timeout = 10 * time.Second

// Run runs the conformance suite; open returns a fresh, empty log.
func Run(t *testing.T, open func(t *testing.T) events.Log) {
	tests := []struct {
		name string
		fn   func(t *testing.T, l events.Log)
	}{
		{"AppendToNewAggregate", testAppendNew},
		{"StaleVersionConflicts", testStaleVersion},
		{"RacingWritersOneWins", testRace},
		{"RetriedCommandAppendsOnce", testRetry},
		{"MultiEventAppendIsAtomic", testAtomic},
		{"LoadReadsBackInOrder", testReadBack},
		{"FollowFromSequence", testFollow},
		{"FollowLive", testFollowLive},
		{"BadInputChangesNothing", testBadInput},
		{"LoadAfterReturnsTheTail", testLoadAfter},
		{"LoadAfterSeesAppends", testLoadAfterSeesAppends},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	t.Cleanup(cancel)
	return ctx
}

func meta(cmd string) events.Meta {
	return events.Meta{At: time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC), CommandID: cmd, CorrelationID: "job-" + cmd, Actor: "logtest"}
}

func created(name string) events.Data {
	return events.VMCreatedData{Name: name, Host: "hv01", Site: "primary", Cloud: "gold",
		Disks: []events.DiskSpec{{Name: "disk0", Size: 1 << 30}}}
}

func health(h string) events.Data { return events.HealthChangedData{Health: h} }

func mustAppend(t *testing.T, l events.Log, agg events.Aggregate, expected uint64, cmd string, evs ...events.Data) events.AppendResult {
	t.Helper()
	res, err := l.Append(ctxFor(t), agg, expected, meta(cmd), evs...)
	require.NoError(t, err)
	require.Len(t, res.Seqs, len(evs))
	require.False(t, res.Duplicate)
	return res
}

func mustLoad(t *testing.T, l events.Log, agg events.Aggregate) []events.Record {
	t.Helper()
	recs, err := l.Load(ctxFor(t), agg)
	require.NoError(t, err)
	return recs
}

func lastSeq(t *testing.T, l events.Log) uint64 {
	t.Helper()
	seq, err := l.LastSeq(ctxFor(t))
	require.NoError(t, err)
	return seq
}

func testAppendNew(t *testing.T, l events.Log) {
	agg := events.VMAgg("web01")
	require.Zero(t, lastSeq(t, l))
	recs, err := l.Load(ctxFor(t), agg)
	require.NoError(t, err)
	require.Nil(t, recs, "an aggregate with no events loads as nil")

	res := mustAppend(t, l, agg, 0, "cmd-1", created("web01"))
	require.Equal(t, []uint64{1}, res.Seqs)
	require.Equal(t, uint64(1), res.Last())
	require.Equal(t, uint64(1), lastSeq(t, l))

	recs = mustLoad(t, l, agg)
	require.Len(t, recs, 1)
	r := recs[0]
	require.Equal(t, uint64(1), r.Seq)
	require.Equal(t, agg, r.Aggregate)
	require.Equal(t, 0, r.Index)
	require.Equal(t, events.VMCreated, r.Type())
	require.Equal(t, created("web01"), r.Data)
	want := meta("cmd-1")
	require.True(t, want.At.Equal(r.Meta.At), "at %s, want %s", r.Meta.At, want.At)
	require.Equal(t, want.CommandID, r.Meta.CommandID)
	require.Equal(t, want.CorrelationID, r.Meta.CorrelationID)
	require.Equal(t, want.Actor, r.Meta.Actor)
}

func testStaleVersion(t *testing.T, l events.Log) {
	agg := events.VMAgg("web01")
	first := mustAppend(t, l, agg, 0, "cmd-1", created("web01"))
	for _, expected := range []uint64{0, first.Last() + 1, 99} {
		_, err := l.Append(ctxFor(t), agg, expected, meta(fmt.Sprintf("cmd-stale-%d", expected)), health(events.HealthWarning))
		require.ErrorIs(t, err, events.ErrConflict, "expected %d", expected)
	}
	require.Len(t, mustLoad(t, l, agg), 1, "a conflict writes nothing")
	require.Equal(t, first.Last(), lastSeq(t, l))

	// Another aggregate's events do not move this one's version.
	mustAppend(t, l, events.VMAgg("web02"), 0, "cmd-2", created("web02"))
	mustAppend(t, l, agg, first.Last(), "cmd-3", health(events.HealthWarning))
	require.Len(t, mustLoad(t, l, agg), 2)
}

// testRace: two writers load the same version and append at once; exactly
// one wins, the other gets a conflict, reloads, decides again and succeeds.
// (On a cluster the loser may conflict more than once: until the winner's
// append is applied, a reload still shows the old version.)
func testRace(t *testing.T, l events.Log) {
	agg := events.VMAgg("web01")
	v0 := mustAppend(t, l, agg, 0, "cmd-0", created("web01")).Last()
	start := make(chan struct{})
	results := make(chan raceOutcome, 2)
	for w := range 2 {
		go func() {
			<-start
			results <- raceWriter(l, agg, v0, w)
		}()
	}
	close(start)
	firstRoundWins := 0
	for range 2 {
		select {
		case o := <-results:
			require.NoError(t, o.err)
			if o.conflicts == 0 {
				firstRoundWins++
			}
		case <-time.After(Timeout):
			t.Fatal("racing writers did not finish")
		}
	}
	require.Equal(t, 1, firstRoundWins, "exactly one writer wins the first round")
	recs := mustLoad(t, l, agg)
	require.Len(t, recs, 3)
	require.NotEqual(t, recs[1].Meta.CommandID, recs[2].Meta.CommandID)
}

type raceOutcome struct {
	conflicts int
	err       error
}

// raceWriter appends at version v, and after a conflict reloads and appends
// at the new version, backing off a little, as a command handler does.
func raceWriter(l events.Log, agg events.Aggregate, v uint64, w int) raceOutcome {
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	var o raceOutcome
	backoff := time.Millisecond
	for {
		_, err := l.Append(ctx, agg, v, meta(fmt.Sprintf("cmd-w%d", w)), health(fmt.Sprintf("h%d", w)))
		if err == nil {
			return o
		}
		if !errorsIs(err, events.ErrConflict) || ctx.Err() != nil {
			o.err = fmt.Errorf("writer %d after %d conflicts: %w", w, o.conflicts, err)
			return o
		}
		o.conflicts++
		time.Sleep(backoff) // a handler's retry backoff, bounded by ctx
		backoff = min(2*backoff, 50*time.Millisecond)
		recs, err := l.Load(ctx, agg)
		if err != nil {
			o.err = err
			return o
		}
		v = recs[len(recs)-1].Seq
	}
}
