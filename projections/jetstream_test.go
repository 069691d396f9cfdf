package projections

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/jetstream"
	"github.com/siterecovery/siterecovery/events/jetstream/jstest"
)

// copyLog appends the records of from after sequence after to to, one
// command each, as they were appended to from.
func copyLog(t *testing.T, from *events.MemLog, to events.Log, after uint64) uint64 {
	t.Helper()
	lastOf := map[events.Aggregate]uint64{}
	ctx := context.Background()
	last, err := from.LastSeq(ctx)
	require.NoError(t, err)
	cur, err := from.Follow(ctx, after+1)
	require.NoError(t, err)
	defer cur.Close()
	for seq := after; seq < last; {
		recs, err := cur.Next(ctx, 100)
		require.NoError(t, err)
		for _, r := range recs {
			expected, ok := lastOf[r.Aggregate]
			if !ok {
				prev, err := to.Load(ctx, r.Aggregate)
				require.NoError(t, err)
				if len(prev) > 0 {
					expected = prev[len(prev)-1].Seq
				}
			}
			res, err := to.Append(ctx, r.Aggregate, expected, r.Meta, r.Data)
			require.NoError(t, err)
			require.Equal(t, r.Seq, res.Last())
			lastOf[r.Aggregate], seq = r.Seq, r.Seq
		}
	}
	return last
}

// TestJetStreamLog runs the Store on the JetStream log: the same events
// give the same answers as on MemLog, and the runner rides out a server
// restart.
func TestJetStreamLog(t *testing.T) {
	srv := jstest.MustRunServer(t)
	nc := jstest.MustConnect(t, srv.ClientURL())
	jl, err := jetstream.Open(context.Background(), nc, jetstream.Config{Logger: testLogger(t)})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, jl.Close()) })

	mem := events.NewMemLog()
	g := newGen(newWorld(t, mem), 11, 5)
	for range 150 {
		g.step()
	}
	last := copyLog(t, mem, jl, 0)
	onMem, onJS := mustOpen(t, "", mem), mustOpen(t, "", jl)
	waitFor(t, onMem, last)
	waitFor(t, onJS, last)
	names := []string{}
	for _, v := range g.vms {
		if v.created {
			names = append(names, v.name)
		}
	}
	require.Equal(t, allAnswers(t, onMem, names...), allAnswers(t, onJS, names...))

	srv = jstest.Restart(t, srv)
	for range 50 {
		g.step()
	}
	last = copyLog(t, mem, jl, last)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, onJS.WaitFor(ctx, last))
	require.NoError(t, onJS.Err())
	checkModel(t, onJS, mem, g)
}
