package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	njs "github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/jetstream"
	"github.com/siterecovery/siterecovery/events/jetstream/jstest"
	"github.com/siterecovery/siterecovery/events/logtest"
)

func meta(cmd string) events.Meta { return events.Meta{CommandID: cmd, Actor: "test"} }

func health(h string) events.Data { return events.HealthChangedData{Health: h} }

// TestClusterRetryAppendsOnce: on a 3-node cluster (R3 stream, chosen
// automatically) a retried
// command, one event or an atomic batch, is appended once.
func TestClusterRetryAppendsOnce(t *testing.T) {
	servers := jstest.MustRunCluster(t, 3, []string{"site:primary", "site:secondary", "site:witness"})
	nc := jstest.MustConnect(t, servers[0].ClientURL())
	require.Eventually(t, func() bool { return len(nc.Servers()) >= 3 }, 10*time.Second, 10*time.Millisecond)
	l := mustOpen(t, nc, jetstream.Config{}) // automatic: R3 on a 3-node cluster
	js, err := njs.New(nc)
	require.NoError(t, err)
	st, err := js.Stream(ctxFor(t), l.StreamName())
	require.NoError(t, err)
	require.Equal(t, 3, st.CachedInfo().Config.Replicas)

	agg := events.VMAgg("web01")
	one, err := l.Append(ctxFor(t), agg, 0, meta("c1"), events.VMCreatedData{Name: "web01"})
	require.NoError(t, err)
	batch, err := l.Append(ctxFor(t), agg, one.Last(), meta("c2"), health("a"), health("b"), health("c"))
	require.NoError(t, err)
	require.Len(t, batch.Seqs, 3)

	for _, expected := range []uint64{0, one.Last(), batch.Last()} {
		res, err := l.Append(ctxFor(t), agg, expected, meta("c1"), events.VMCreatedData{Name: "web01"})
		require.NoError(t, err, "retry one at %d", expected)
		require.True(t, res.Duplicate)
		require.Equal(t, one.Seqs, res.Seqs)
		res, err = l.Append(ctxFor(t), agg, expected, meta("c2"), health("a"), health("b"), health("c"))
		require.NoError(t, err, "retry batch at %d", expected)
		require.True(t, res.Duplicate)
		require.Equal(t, batch.Seqs, res.Seqs)
	}
	_, err = l.Append(ctxFor(t), agg, one.Last(), meta("c3"), health("d"), health("e"))
	require.ErrorIs(t, err, events.ErrConflict)
	recs, err := l.Load(ctxFor(t), agg)
	require.NoError(t, err)
	require.Len(t, recs, 4)
}

// TestClusterConformance runs the conformance suite on an R3 stream of a
// 3-node cluster (each subtest on a new stream; Load must see every
// acknowledged append although direct gets may be answered by replicas).
func TestClusterConformance(t *testing.T) {
	servers := jstest.MustRunCluster(t, 3, nil)
	logtest.Run(t, func(t *testing.T) events.Log {
		nc := jstest.MustConnect(t, servers[len(t.Name())%3].ClientURL())
		js, err := njs.New(nc)
		require.NoError(t, err)
		if err := js.DeleteStream(ctxFor(t), jetstream.DefaultStream); err != nil {
			require.ErrorIs(t, err, njs.ErrStreamNotFound)
		}
		return mustOpen(t, nc, jetstream.Config{Replicas: 3})
	})
}

// TestServerRestart: everything acknowledged survives a restart on the same
// store, and the log keeps working on the reconnected connection.
func TestServerRestart(t *testing.T) {
	s := jstest.MustRunServer(t)
	nc := jstest.MustConnect(t, s.ClientURL())
	l := mustOpen(t, nc, jetstream.Config{})
	agg := events.VMAgg("web01")
	var v uint64
	for i := range 10 {
		res, err := l.Append(ctxFor(t), agg, v, meta(fmt.Sprintf("c%d", i)), health(fmt.Sprint(i)))
		require.NoError(t, err)
		v = res.Last()
	}
	cur, err := l.Follow(ctxFor(t), 1)
	require.NoError(t, err)
	defer cur.Close()
	recs, err := cur.Next(ctxFor(t), 4)
	require.NoError(t, err)

	s = jstest.Restart(t, s)

	res, err := appendUntilConnected(t, l, agg, v, "after-restart")
	require.NoError(t, err)
	require.Equal(t, uint64(11), res.Last())
	loaded, err := l.Load(ctxFor(t), agg)
	require.NoError(t, err)
	require.Len(t, loaded, 11)
	for len(recs) < 11 {
		more, err := cur.Next(ctxFor(t), 100)
		require.NoError(t, err)
		recs = append(recs, more...)
	}
	for i, r := range recs {
		require.Equal(t, uint64(i+1), r.Seq, "the cursor goes on across the restart without gap or repeat")
	}
	last, err := l.LastSeq(ctxFor(t))
	require.NoError(t, err)
	require.Equal(t, uint64(11), last)
}

// appendUntilConnected appends once the connection is back, retrying the
// same command (which is safe: it is idempotent) while the server restarts.
func appendUntilConnected(t *testing.T, l events.Log, agg events.Aggregate, v uint64, cmd string) (events.AppendResult, error) {
	deadline := time.Now().Add(15 * time.Second)
	for {
		// A request in flight when the server stops gets no reply: bound
		// each attempt.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		res, err := l.Append(ctx, agg, v, meta(cmd), health("back"))
		cancel()
		if err == nil || time.Now().After(deadline) || errors.Is(err, events.ErrConflict) {
			return res, err
		}
		time.Sleep(20 * time.Millisecond) // reconnecting; bounded by the deadline
	}
}

// TestGarbageOnTheEventSubjects: messages that are not events are reported
// with their sequence by Load and Follow, and nothing crashes.
func TestGarbageOnTheEventSubjects(t *testing.T) {
	s := jstest.MustRunServer(t)
	nc := jstest.MustConnect(t, s.ClientURL())
	l := mustOpen(t, nc, jetstream.Config{})
	agg := events.VMAgg("web01")
	_, err := l.Append(ctxFor(t), agg, 0, meta("c1"), events.VMCreatedData{Name: "web01"})
	require.NoError(t, err)
	js, err := njs.New(nc)
	require.NoError(t, err)
	garbage := []struct{ subject, payload string }{
		{"sr.evt.x.y.z", "garbage"},
		{"sr.evt.vm.web01.health_changed", "{not json"},
		{"sr.evt.vm.web01.health_changed", `{"type":"vm_created","version":1,"at":"2026-01-01T00:00:00Z","command_id":"x","data":{}}`},
	}
	for _, g := range garbage {
		_, err := js.Publish(ctxFor(t), g.subject, []byte(g.payload))
		require.NoError(t, err)
	}

	_, err = l.Load(ctxFor(t), agg)
	var recErr *jetstream.RecordError
	require.ErrorAs(t, err, &recErr)
	require.ErrorIs(t, err, jetstream.ErrBadRecord)
	require.ErrorIs(t, err, events.ErrDecode)
	require.Equal(t, uint64(3), recErr.Seq)
	require.Contains(t, err.Error(), "sequence 3")

	cur, err := l.Follow(ctxFor(t), 1)
	require.NoError(t, err)
	defer cur.Close()
	recs, err := cur.Next(ctxFor(t), 10)
	require.NoError(t, err)
	require.Len(t, recs, 1, "the valid record before the bad one")
	for range 2 {
		_, err = cur.Next(ctxFor(t), 10)
		require.ErrorAs(t, err, &recErr, "the cursor stays at the bad record")
		require.Equal(t, uint64(2), recErr.Seq)
		require.ErrorIs(t, err, events.ErrInvalidToken)
	}
	// Skipping is the caller's explicit decision.
	cur2, err := l.Follow(ctxFor(t), 5)
	require.NoError(t, err)
	defer cur2.Close()
	_, err = l.Append(ctxFor(t), events.VMAgg("web02"), 0, meta("c2"), events.VMCreatedData{Name: "web02"})
	require.NoError(t, err)
	recs, err = cur2.Next(ctxFor(t), 10)
	require.NoError(t, err)
	require.Equal(t, uint64(5), recs[0].Seq)
}

// TestRestartUnderLoad: a writer appends to new aggregates while the server
// restarts; it retries a failed append with the same command id. Every
// append it saw acknowledged is stored exactly once with its sequence.
func TestRestartUnderLoad(t *testing.T) {
	s := jstest.MustRunServer(t)
	nc := jstest.MustConnect(t, s.ClientURL())
	l := mustOpen(t, nc, jetstream.Config{})
	acked := map[int]uint64{}
	var restarted atomic.Bool
	done := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			if restarted.Load() && i%20 == 0 && len(acked) > 40 {
				done <- nil
				return
			}
			agg := events.VMAgg(fmt.Sprintf("vm%d", i))
			res, err := appendUntilConnected(t, l, agg, 0, fmt.Sprintf("c%d", i))
			if err != nil {
				done <- fmt.Errorf("append %d: %w", i, err)
				return
			}
			acked[i] = res.Last()
		}
	}()
	waitForAppends(t, l, 10)
	jstest.Restart(t, s)
	restarted.Store(true)
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("writer did not finish")
	}
	for i, seq := range acked {
		recs, err := l.Load(ctxFor(t), events.VMAgg(fmt.Sprintf("vm%d", i)))
		require.NoError(t, err)
		require.Len(t, recs, 1, "vm%d stored exactly once", i)
		require.Equal(t, seq, recs[0].Seq)
	}
	last, err := l.LastSeq(ctxFor(t))
	require.NoError(t, err)
	require.Equal(t, uint64(len(acked)), last, "nothing stored twice or unacknowledged")
}

// waitForAppends waits until the log holds n events.
func waitForAppends(t *testing.T, l events.Log, n uint64) {
	t.Helper()
	require.Eventually(t, func() bool {
		last, err := l.LastSeq(ctxFor(t))
		return err == nil && last >= n
	}, 10*time.Second, 5*time.Millisecond)
}
