package natsbus_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events/jetstream/jstest"
	"github.com/siterecovery/siterecovery/hostsync"
	"github.com/siterecovery/siterecovery/hostsync/natsbus"
)

// mustBus is a Bus on its own connection to a fresh embedded server.
func mustBus(tb testing.TB) (*natsbus.Bus, *nats.Conn) {
	tb.Helper()
	srv := jstest.MustRunServer(tb)
	nc := jstest.MustConnect(tb, srv.ClientURL())
	bus, err := natsbus.New(nc)
	require.NoError(tb, err)
	return bus, nc
}

func TestNewNeedsConnection(t *testing.T) {
	_, err := natsbus.New(nil)
	require.ErrorIs(t, err, natsbus.ErrNoConnection)
	bus, _ := mustBus(t)
	tr := bus.Transport()
	require.NotNil(t, tr.ControlPlane)
	require.NotNil(t, tr.Peers)
	require.NotNil(t, tr.Deltas)
	require.NotNil(t, tr.Batches)
	require.Positive(t, bus.MaxPayload())
}

type peerMsg struct{ subject, data string }

func TestPeersPublishSubscribe(t *testing.T) {
	bus, nc := mustBus(t)
	got := make(chan peerMsg, 4)
	sub, err := bus.Subscribe("sr.ack.hv01.*", func(subject string, data []byte) {
		got <- peerMsg{subject, string(data)}
	})
	require.NoError(t, err)
	require.NoError(t, nc.Flush())
	require.NoError(t, bus.Publish("sr.ack.hv01.web01", []byte(`{"seq":3}`)))
	select {
	case m := <-got:
		require.Equal(t, peerMsg{"sr.ack.hv01.web01", `{"seq":3}`}, m)
	case <-time.After(5 * time.Second):
		t.Fatal("no message")
	}
	require.NoError(t, sub.Unsubscribe())
	require.ErrorIs(t, sub.Unsubscribe(), hostsync.ErrSubscriptionClosed)
}

func TestPeersServeRequest(t *testing.T) {
	bus, nc := mustBus(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sub, err := bus.Serve("sr.agent.hv11.leaves.web01", func(data []byte, respond func([]byte) error) {
		require.NoError(t, respond(append([]byte("re:"), data...)))
	})
	require.NoError(t, err)
	reply, err := bus.Request(ctx, "sr.agent.hv11.leaves.web01", []byte("ask"))
	require.NoError(t, err)
	require.Equal(t, "re:ask", string(reply))

	// Nobody serving: an error, at once (no responders), not a reply.
	_, err = bus.Request(ctx, "sr.agent.hv12.leaves.web01", []byte("ask"))
	require.Error(t, err)

	nc.Close()
	require.ErrorIs(t, sub.Unsubscribe(), hostsync.ErrSubscriptionClosed)
}
