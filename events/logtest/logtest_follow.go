package logtest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
)

// readN reads exactly n records from c, checking each Next returns 1..max.
func readN(t *testing.T, c events.Cursor, n, max int) []events.Record {
	t.Helper()
	ctx := ctxFor(t)
	var out []events.Record
	for len(out) < n {
		recs, err := c.Next(ctx, max)
		require.NoError(t, err)
		require.NotEmpty(t, recs)
		require.LessOrEqual(t, len(recs), max)
		out = append(out, recs...)
	}
	require.Len(t, out, n, "no more records than appended")
	return out
}

func requireContiguous(t *testing.T, recs []events.Record, from uint64) {
	t.Helper()
	for i, r := range recs {
		require.Equal(t, from+uint64(i), r.Seq, "record %d", i)
	}
}

func appendSome(t *testing.T, l events.Log, n int) {
	t.Helper()
	agg := events.VMAgg("web01")
	recs := mustLoad(t, l, agg)
	var v uint64
	if len(recs) > 0 {
		v = recs[len(recs)-1].Seq
	}
	for i := range n {
		v = mustAppend(t, l, agg, v, fmt.Sprintf("cmd-%d-%d", v, i), health(fmt.Sprintf("h%d", v))).Last()
	}
}

func testFollow(t *testing.T, l events.Log) {
	appendSome(t, l, 7)
	for _, from := range []uint64{0, 1, 4, 7} {
		c, err := l.Follow(ctxFor(t), from)
		require.NoError(t, err)
		start := max(from, 1)
		recs := readN(t, c, int(8-start), 3)
		requireContiguous(t, recs, start)
		require.NoError(t, c.Close())
		require.NoError(t, c.Close(), "Close is safe twice")
	}

	// Next waits while nothing follows, until ctx is done.
	c, err := l.Follow(ctxFor(t), 8)
	require.NoError(t, err)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	recs, err := c.Next(ctx, 10)
	require.Error(t, err, "got %v", recs)
	require.Empty(t, recs)
}

// testFollowLive: a cursor started before appends sees them, in order,
// without waiting to fill max.
func testFollowLive(t *testing.T, l events.Log) {
	appendSome(t, l, 2)
	c, err := l.Follow(ctxFor(t), 1)
	require.NoError(t, err)
	defer c.Close()
	requireContiguous(t, readN(t, c, 2, 100), 1)

	got := make(chan []events.Record, 1)
	errs := make(chan error, 1)
	go func() {
		recs, err := c.Next(ctxFor(t), 100)
		if err != nil {
			errs <- err
			return
		}
		got <- recs
	}()
	appendSome(t, l, 1)
	select {
	case recs := <-got:
		requireContiguous(t, recs, 3)
	case err := <-errs:
		t.Fatal(err)
	case <-time.After(Timeout):
		t.Fatal("a live append did not reach the cursor")
	}
	appendSome(t, l, 5)
	requireContiguous(t, readN(t, c, 5, 100), 4)
}

type bogus struct{}

func (bogus) EventType() events.Type { return "no_such_event" }

// testBadInput: bad arguments get a clear error and append nothing.
func testBadInput(t *testing.T, l events.Log) {
	mustAppend(t, l, events.VMAgg("web01"), 0, "cmd-0", created("web01"))
	cases := []struct {
		name string
		agg  events.Aggregate
		cmd  string
		evs  []events.Data
		want error
	}{
		{"id with a dot", events.VMAgg("web.01"), "c", []events.Data{created("x")}, events.ErrInvalidToken},
		{"id with a wildcard", events.VMAgg("web*"), "c", []events.Data{created("x")}, events.ErrInvalidToken},
		{"id with a space", events.VMAgg("web 01"), "c", []events.Data{created("x")}, events.ErrInvalidToken},
		{"empty id", events.VMAgg(""), "c", []events.Data{created("x")}, events.ErrInvalidToken},
		{"unknown kind", events.Aggregate{Kind: "disk", ID: "d1"}, "c", []events.Data{created("x")}, events.ErrInvalidToken},
		{"unknown event type", events.VMAgg("web02"), "c", []events.Data{bogus{}}, events.ErrUnknownType},
		{"event of another kind", events.VMAgg("web02"), "c", []events.Data{events.SiteRegisteredData{Name: "s"}}, events.ErrUnknownType},
		{"nil event", events.VMAgg("web02"), "c", []events.Data{nil}, events.ErrUnknownType},
		{"no events", events.VMAgg("web02"), "c", nil, events.ErrNoEvents},
		{"empty command id", events.VMAgg("web02"), "", []events.Data{created("x")}, events.ErrInvalidToken},
	}
	for _, tc := range cases {
		_, err := l.Append(ctxFor(t), tc.agg, 0, meta(tc.cmd), tc.evs...)
		require.ErrorIs(t, err, tc.want, tc.name)
	}
	require.Equal(t, uint64(1), lastSeq(t, l), "bad input appended nothing")
	_, err := l.Load(ctxFor(t), events.VMAgg("web.>"))
	require.ErrorIs(t, err, events.ErrInvalidToken)
}
