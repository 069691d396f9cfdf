package subscribe_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/jetstream"
	"github.com/siterecovery/siterecovery/events/jetstream/jstest"
	"github.com/siterecovery/siterecovery/events/subscribe"
)

// mustOpenLog starts an embedded server and opens the event log on it.
func mustOpenLog(t *testing.T) (*nats.Conn, *jetstream.Log) {
	t.Helper()
	srv := jstest.MustRunServer(t)
	nc := jstest.MustConnect(t, jstest.URL(srv))
	l, err := jetstream.Open(context.Background(), nc, jetstream.Config{Logger: zerolog.Nop()})
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	return nc, l
}

// appendVM appends one event to vm under a fresh command id.
func appendVM(t *testing.T, l *jetstream.Log, vm string, d events.Data) uint64 {
	t.Helper()
	ctx := context.Background()
	recs, err := l.Load(ctx, events.VMAgg(vm))
	require.NoError(t, err)
	var last uint64
	if len(recs) > 0 {
		last = recs[len(recs)-1].Seq
	}
	res, err := l.Append(ctx, events.VMAgg(vm), last, events.Meta{CommandID: fmt.Sprintf("c-%s-%d", vm, len(recs))}, d)
	require.NoError(t, err)
	return res.Last()
}

func next(t *testing.T, sub *subscribe.Subscription) events.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := sub.Next(ctx)
	require.NoError(t, err)
	return r
}

func TestFollowDeliversOnlyTheTypesAskedInOrder(t *testing.T) {
	nc, l := mustOpenLog(t)
	s1 := appendVM(t, l, "web01", events.FailoverStartedData{Mode: "planned"})
	s2 := appendVM(t, l, "web01", events.FailoverCompletedData{Mode: "planned", Host: "hv02", Epoch: 2})
	s3 := appendVM(t, l, "db01", events.FailoverCompletedData{Mode: "unplanned", Host: "hv02", Epoch: 3})
	require.Less(t, s1, s2)

	sub, err := subscribe.Follow(context.Background(), nc, 1, events.FailoverCompleted)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, sub.Close()) })
	r := next(t, sub)
	require.Equal(t, s2, r.Seq)
	require.Equal(t, events.VMAgg("web01"), r.Aggregate)
	require.Equal(t, uint64(2), r.Data.(events.FailoverCompletedData).Epoch)
	require.Equal(t, s3, next(t, sub).Seq)

	// An event appended later is delivered as it comes; others are not.
	appendVM(t, l, "db01", events.FailoverCommittedData{})
	s5 := appendVM(t, l, "app01", events.FailoverCompletedData{Mode: "planned", Host: "hv01", Epoch: 1})
	r = next(t, sub)
	require.Equal(t, s5, r.Seq)
	require.Equal(t, "app01", r.Aggregate.ID)

	// From a sequence: the events before it are not delivered.
	from, err := subscribe.Follow(context.Background(), nc, s3, events.FailoverCompleted, events.FailoverStarted)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, from.Close()) })
	require.Equal(t, s3, next(t, from).Seq)
	require.Equal(t, s5, next(t, from).Seq)

	require.NoError(t, sub.Close())
	require.NoError(t, sub.Close(), "Close twice")
	_, err = sub.Next(context.Background())
	require.ErrorIs(t, err, subscribe.ErrClosed)
}

func TestFollowRefusesUnknownTypes(t *testing.T) {
	nc, _ := mustOpenLog(t)
	_, err := subscribe.Follow(context.Background(), nc, 1, events.Type("failover_finished"))
	require.ErrorIs(t, err, events.ErrUnknownType)
}

func TestFollowReportsAMessageThatIsNotAnEvent(t *testing.T) {
	nc, l := mustOpenLog(t)
	js, err := natsjs.New(nc)
	require.NoError(t, err)
	_, err = js.Publish(context.Background(), "sr.evt.vm.web01.failover_completed", []byte("not json"))
	require.NoError(t, err)
	good := appendVM(t, l, "web02", events.FailoverCompletedData{Host: "hv02"})

	sub, err := subscribe.Follow(context.Background(), nc, 0, events.FailoverCompleted)
	require.NoError(t, err)
	t.Cleanup(func() { sub.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = sub.Next(ctx)
	var re *subscribe.RecordError
	require.True(t, errors.As(err, &re), "%v", err)
	require.Equal(t, uint64(1), re.Seq)
	require.ErrorIs(t, err, events.ErrDecode)
	require.Equal(t, good, next(t, sub).Seq, "the subscription goes on after it")
}

func TestDurableSharesEventsAndResumesAfterAck(t *testing.T) {
	nc, l := mustOpenLog(t)
	ctx := context.Background()
	cfg := subscribe.DurableConfig{Name: "test-durable", Types: []events.Type{events.FailoverCompleted}, AckWait: 30 * time.Second}
	s1 := appendVM(t, l, "web01", events.FailoverCompletedData{Host: "hv02"})
	appendVM(t, l, "web01", events.FailoverCommittedData{})
	s3 := appendVM(t, l, "web02", events.FailoverCompletedData{Host: "hv02"})

	d, err := subscribe.OpenDurable(ctx, nc, cfg)
	require.NoError(t, err)
	got := nextDelivery(t, d)
	require.Equal(t, s1, got.Record.Seq)
	require.Equal(t, uint64(1), got.NumDelivered)
	_, data, err := events.Decode(got.Payload)
	require.NoError(t, err)
	require.Equal(t, "hv02", data.(events.FailoverCompletedData).Host)
	require.NoError(t, got.Ack(ctx))
	// Closed with s3 pulled but not taken: it is given back at once.
	require.NoError(t, d.Close())
	require.NoError(t, d.Close(), "Close twice")

	again, err := subscribe.OpenDurable(ctx, nc, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { again.Close() })
	got = nextDelivery(t, again)
	require.Equal(t, s3, got.Record.Seq, "resumes after the acked event")
	require.NoError(t, got.Nak(0))
	got = nextDelivery(t, again)
	require.Equal(t, s3, got.Record.Seq, "a nak'd event comes again")
	require.Greater(t, got.NumDelivered, uint64(1))
	require.NoError(t, got.Ack(ctx))
}

func nextDelivery(t *testing.T, d *subscribe.Durable) *subscribe.Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := d.Next(ctx)
	require.NoError(t, err)
	require.NoError(t, got.Err)
	return got
}
