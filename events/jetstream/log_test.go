package jetstream_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	njs "github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/jetstream"
	"github.com/siterecovery/siterecovery/events/jetstream/jstest"
	"github.com/siterecovery/siterecovery/events/logtest"
)

func ctxFor(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// mustOpen opens the log on nc and closes it when the test ends.
func mustOpen(t testing.TB, nc *nats.Conn, cfg jetstream.Config) *jetstream.Log {
	t.Helper()
	l, err := jetstream.Open(ctxFor(t), nc, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, l.Close()) })
	return l
}

func TestConformance(t *testing.T) {
	logtest.Run(t, func(t *testing.T) events.Log {
		s := jstest.MustRunServer(t)
		return mustOpen(t, jstest.MustConnect(t, s.ClientURL()), jetstream.Config{})
	})
}

func TestOpenCreatesTheStreamOfTheDesign(t *testing.T) {
	s := jstest.MustRunServer(t)
	nc := jstest.MustConnect(t, s.ClientURL())
	l := mustOpen(t, nc, jetstream.Config{Logger: zerolog.Nop()})
	require.Equal(t, "SR_EVENTS", l.StreamName())
	js, err := njs.New(nc)
	require.NoError(t, err)
	st, err := js.Stream(ctxFor(t), "SR_EVENTS")
	require.NoError(t, err)
	cfg := st.CachedInfo().Config
	require.Equal(t, []string{"sr.evt.>"}, cfg.Subjects)
	require.Equal(t, njs.FileStorage, cfg.Storage)
	require.Equal(t, njs.DiscardNew, cfg.Discard)
	require.True(t, cfg.DenyDelete && cfg.DenyPurge && cfg.AllowDirect && cfg.AllowAtomicPublish)
	require.Equal(t, 2*time.Minute, cfg.Duplicates)
	require.Equal(t, 1, cfg.Replicas)
	require.LessOrEqual(t, cfg.MaxBytes, int64(0))

	// Idempotent: opening again (as another serve would) works.
	mustOpen(t, nc, jetstream.Config{})
	require.NoError(t, l.Close())
	require.NoError(t, l.Close(), "Close is safe twice")
	_, err = l.Append(ctxFor(t), events.VMAgg("web01"), 0, events.Meta{CommandID: "c"}, events.VMCreatedData{Name: "web01"})
	require.ErrorIs(t, err, events.ErrClosed)
}

func TestOpenRefusesAWeakerStream(t *testing.T) {
	s := jstest.MustRunServer(t)
	nc := jstest.MustConnect(t, s.ClientURL())
	js, err := njs.New(nc)
	require.NoError(t, err)
	weak := njs.StreamConfig{
		Name: "SR_EVENTS", Subjects: []string{"sr.evt.>"}, Storage: njs.MemoryStorage,
		Discard: njs.DiscardOld, MaxMsgs: 1000, MaxAge: time.Hour,
	}
	_, err = js.CreateStream(ctxFor(t), weak)
	require.NoError(t, err)

	_, err = jetstream.Open(ctxFor(t), nc, jetstream.Config{})
	require.ErrorIs(t, err, jetstream.ErrWeakStream)
	var cfgErr *jetstream.StreamConfigError
	require.ErrorAs(t, err, &cfgErr)
	for _, want := range []string{"storage", "discard", "max messages", "max age", "delete", "purge", "direct", "atomic"} {
		require.Contains(t, err.Error(), want)
	}
	st, err := js.Stream(ctxFor(t), "SR_EVENTS")
	require.NoError(t, err)
	require.Equal(t, njs.MemoryStorage, st.CachedInfo().Config.Storage, "Open changed nothing")

	// Fewer replicas than asked is weaker too.
	_, err = jetstream.Open(ctxFor(t), nc, jetstream.Config{Stream: "OTHER"})
	require.Error(t, err, "subjects overlap with the existing stream")
	_, err = jetstream.Open(ctxFor(t), nc, jetstream.Config{Replicas: -1})
	require.ErrorIs(t, err, events.ErrInvalidArgument)
}

func TestOpenRefusesFewerReplicas(t *testing.T) {
	s := jstest.MustRunServer(t)
	nc := jstest.MustConnect(t, s.ClientURL())
	mustOpen(t, nc, jetstream.Config{})
	_, err := jetstream.Open(ctxFor(t), nc, jetstream.Config{Replicas: 3})
	require.ErrorIs(t, err, jetstream.ErrWeakStream)
	require.Contains(t, err.Error(), "1 replicas (want at least 3)")
}

// TestCloseStopsCursors: closing the log ends a blocked Next with
// events.ErrClosed, and a closed log refuses everything.
func TestCloseStopsCursors(t *testing.T) {
	s := jstest.MustRunServer(t)
	nc := jstest.MustConnect(t, s.ClientURL())
	l, err := jetstream.Open(ctxFor(t), nc, jetstream.Config{})
	require.NoError(t, err)
	cur, err := l.Follow(ctxFor(t), 1)
	require.NoError(t, err)
	errs := make(chan error, 1)
	go func() {
		_, err := cur.Next(ctxFor(t), 10)
		errs <- err
	}()
	require.NoError(t, l.Close())
	select {
	case err := <-errs:
		require.ErrorIs(t, err, events.ErrClosed)
	case <-time.After(10 * time.Second):
		t.Fatal("Next still blocked after Close")
	}
	require.NoError(t, cur.Close())
	_, err = l.Follow(ctxFor(t), 1)
	require.ErrorIs(t, err, events.ErrClosed)
	_, err = l.Load(ctxFor(t), events.VMAgg("web01"))
	require.ErrorIs(t, err, events.ErrClosed)
	_, err = l.LastSeq(ctxFor(t))
	require.ErrorIs(t, err, events.ErrClosed)
}
