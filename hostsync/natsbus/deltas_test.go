package natsbus_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events/agentproto"
	"github.com/siterecovery/siterecovery/hostsync"
	"github.com/siterecovery/siterecovery/hostsync/natsbus"
)

func TestDeltaStreamsNotFound(t *testing.T) {
	bus, _ := mustBus(t)
	ctx := context.Background()
	require.ErrorIs(t, bus.DeleteConsumer(ctx, "dr", "web01"), hostsync.ErrStreamNotFound)
	require.ErrorIs(t, bus.Purge(ctx, "dr", "web01"), hostsync.ErrStreamNotFound)
	require.NoError(t, bus.EnsureStream(ctx, "dr"))
	require.NoError(t, bus.EnsureStream(ctx, "dr"), "idempotent")
	err := bus.DeleteConsumer(ctx, "dr", "web01")
	require.ErrorIs(t, err, hostsync.ErrConsumerNotFound)
	require.ErrorIs(t, err, jetstream.ErrConsumerNotFound, "the client's error stays in the chain")
	_, _, err = bus.Backlog(ctx, "dr", "web01")
	require.ErrorIs(t, err, hostsync.ErrConsumerNotFound)
	require.NoError(t, bus.Purge(ctx, "dr", "web01"))
}

// TestDeltaConfig holds the stream's and the consumer's JetStream
// configuration to what the agent has always made.
func TestDeltaConfig(t *testing.T) {
	bus, nc := mustBus(t)
	ctx := context.Background()
	require.NoError(t, bus.EnsureStream(ctx, "dr"))
	_, err := bus.CreateConsumer(ctx, "dr", "web01", 30*time.Second)
	require.NoError(t, err)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	s, err := js.Stream(ctx, "SR_DELTA_dr")
	require.NoError(t, err)
	sc := s.CachedInfo().Config
	require.Equal(t, []string{"sr.delta.dr.>"}, sc.Subjects)
	require.Equal(t, jetstream.WorkQueuePolicy, sc.Retention)
	require.Equal(t, jetstream.FileStorage, sc.Storage)
	require.Equal(t, jetstream.DiscardNew, sc.Discard)
	require.Equal(t, 2*time.Minute, sc.Duplicates)
	require.Equal(t, 1, sc.Replicas)
	require.Equal(t, jetstream.AsyncPersistMode, sc.PersistMode)
	c, err := js.Consumer(ctx, "SR_DELTA_dr", "sr-apply-web01")
	require.NoError(t, err)
	cc := c.CachedInfo().Config
	require.Equal(t, "sr-apply-web01", cc.Durable)
	require.Equal(t, "sr.delta.dr.*.web01.*", cc.FilterSubject)
	require.Equal(t, jetstream.AckExplicitPolicy, cc.AckPolicy)
	require.Equal(t, 30*time.Second, cc.AckWait)
	require.Equal(t, 1<<16, cc.MaxAckPending)
	require.Equal(t, jetstream.DeliverAllPolicy, cc.DeliverPolicy)
}

// publish publishes one batch per body with ids <body>, waiting for each.
func publish(t *testing.T, bus *natsbus.Bus, subject string, bodies ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, b := range bodies {
		ack, err := bus.PublishBatch(subject, "id-"+b, []byte(b))
		require.NoError(t, err)
		require.NoError(t, ack.Wait(ctx))
	}
}

func TestPublishAck(t *testing.T) {
	bus, _ := mustBus(t)
	ctx := context.Background()
	subject := agentproto.DeltaSubject("dr", "hv01", "web01", 1)
	ack, err := bus.PublishBatch(subject, "x", []byte("x"))
	require.NoError(t, err)
	err = ack.Wait(ctx)
	require.ErrorContains(t, err, "publish "+subject, "no stream: the publish is refused, naming its subject")

	require.NoError(t, bus.EnsureStream(ctx, "dr"))
	publish(t, bus, subject, "a", "a") // the second is a duplicate: dropped
	_, err = bus.CreateConsumer(ctx, "dr", "web01", 30*time.Second)
	require.NoError(t, err)
	pending, ackPending, err := bus.Backlog(ctx, "dr", "web01")
	require.NoError(t, err)
	require.Equal(t, [2]uint64{1, 0}, [2]uint64{pending, ackPending})

	done, cancel := context.WithCancel(ctx)
	cancel()
	ack, err = bus.PublishBatch(subject, "y", []byte("y"))
	require.NoError(t, err)
	require.ErrorIs(t, ack.Wait(done), context.Canceled)
}

// next takes the next delivery, failing the test when none comes.
func next(t *testing.T, f hostsync.BatchFeed) hostsync.Delivery {
	t.Helper()
	d, err := f.Next(5 * time.Second)
	require.NoError(t, err)
	return d
}

// TestDeliverySettling maps each way of settling a delivery to what the
// consumer does next: Ack and AckSync end it, Nak delivers it again (at
// once, or after the delay), Term never again, InProgress keeps it.
func TestDeliverySettling(t *testing.T) {
	bus, _ := mustBus(t)
	ctx := context.Background()
	require.NoError(t, bus.EnsureStream(ctx, "dr"))
	subject := agentproto.DeltaSubject("dr", "hv01", "web01", 1)
	publish(t, bus, subject, "a", "b", "c", "d", "e")
	cons, err := bus.CreateConsumer(ctx, "dr", "web01", 30*time.Second)
	require.NoError(t, err)
	feed, err := cons.Pull(1 << 20)
	require.NoError(t, err)
	defer feed.Stop()
	got := map[string]hostsync.Delivery{}
	for _, want := range []string{"a", "b", "c", "d", "e"} {
		d := next(t, feed)
		require.Equal(t, want, string(d.Data), "stream order")
		require.Equal(t, subject, d.Subject)
		require.Equal(t, uint64(1), d.Delivered)
		got[want] = d
	}
	require.NoError(t, got["a"].Ack())
	require.NoError(t, got["b"].AckSync(ctx))
	require.NoError(t, got["c"].Nak(0))
	nakAt := time.Now()
	require.NoError(t, got["d"].Nak(700*time.Millisecond))
	require.NoError(t, got["e"].Term())

	c := next(t, feed)
	require.Equal(t, "c", string(c.Data))
	require.Equal(t, uint64(2), c.Delivered)
	require.NoError(t, c.InProgress())
	d := next(t, feed)
	require.Equal(t, "d", string(d.Data))
	require.Equal(t, uint64(2), d.Delivered)
	require.GreaterOrEqual(t, time.Since(nakAt), 600*time.Millisecond, "delivered again after the delay")

	_, err = feed.Next(300 * time.Millisecond)
	require.ErrorIs(t, err, hostsync.ErrNoBatch, "acked and terminated batches do not come again")
	require.NoError(t, c.Ack())
	require.NoError(t, d.AckSync(ctx))
	pending, ackPending, err := bus.Backlog(ctx, "dr", "web01")
	require.NoError(t, err)
	require.Equal(t, [2]uint64{0, 0}, [2]uint64{pending, ackPending})

	feed.Stop()
	_, err = feed.Next(300 * time.Millisecond)
	require.Error(t, err)
	require.NotErrorIs(t, err, hostsync.ErrNoBatch, "a stopped feed ends")
}

// TestDeleteConsumerRedelivers: the batches a deleted consumer held
// unacknowledged come at once to the next one, in stream order; Purge
// drops what is left.
func TestDeleteConsumerRedelivers(t *testing.T) {
	bus, _ := mustBus(t)
	ctx := context.Background()
	require.NoError(t, bus.EnsureStream(ctx, "dr"))
	subject := agentproto.DeltaSubject("dr", "hv01", "web01", 1)
	publish(t, bus, subject, "a", "b")
	cons, err := bus.CreateConsumer(ctx, "dr", "web01", 30*time.Second)
	require.NoError(t, err)
	feed, err := cons.Pull(1 << 20)
	require.NoError(t, err)
	require.Equal(t, "a", string(next(t, feed).Data))
	feed.Stop()
	require.NoError(t, bus.DeleteConsumer(ctx, "dr", "web01"))
	cons, err = bus.CreateConsumer(ctx, "dr", "web01", 30*time.Second)
	require.NoError(t, err)
	feed, err = cons.Pull(1 << 20)
	require.NoError(t, err)
	defer feed.Stop()
	for _, want := range []string{"a", "b"} {
		d := next(t, feed)
		require.Equal(t, want, string(d.Data))
		require.Equal(t, uint64(1), d.Delivered, fmt.Sprintf("%s: a new consumer counts afresh", want))
	}
	require.NoError(t, bus.Purge(ctx, "dr", "web01"))
	pending, _, err := bus.Backlog(ctx, "dr", "web01")
	require.NoError(t, err)
	require.Zero(t, pending)
}
