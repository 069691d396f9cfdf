package jetstream

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

// TestAskLeaderAsksAgainWhileUnanswered: a stream whose leader is lost does
// not answer at all; askLeader gives an attempt leaderAsk and asks again,
// so it returns soon after a leader answers, not at the call's deadline.
func TestAskLeaderAsksAgainWhileUnanswered(t *testing.T) {
	s, err := StartServer(ServerConfig{Dir: t.TempDir(), Port: -1, NoLog: true})
	require.NoError(t, err)
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	nc, err := nats.Connect(s.ClientURL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	var asked atomic.Int32
	_, err = nc.Subscribe("test.leader", func(m *nats.Msg) {
		if asked.Add(1) == 1 {
			return // no leader yet: no answer
		}
		_ = m.Respond([]byte("ok"))
	})
	require.NoError(t, err)
	require.NoError(t, nc.Flush())
	l := &Log{nc: nc, logger: zerolog.Nop()}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	msg, err := l.askLeader(ctx, "test.leader", nil)
	require.NoError(t, err)
	require.Equal(t, "ok", string(msg.Data))
	require.EqualValues(t, 2, asked.Load())
	require.Less(t, time.Since(start), leaderAsk+5*time.Second, "answered after one attempt's bound, not at the deadline")
}
