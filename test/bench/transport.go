package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/siterecovery/siterecovery/cmd/siterecovery/controlplane"
	"github.com/siterecovery/siterecovery/events/agentproto"
	"github.com/siterecovery/siterecovery/hostsync/natsbus"
)

// transportSite is the site of the scratch delta stream rawTransport
// uses; no agent ships to it.
const transportSite = "benchraw"

// rawTransport measures the ceiling JetStream puts on replication on this
// machine: size bytes (rounded up to MiB) published in 1 MiB messages (the agents' batch
// size) by one connection, with at most 128 MiB unacknowledged, to a
// stream made as the delta streams are (natsbus.EnsureDeltaStream: file,
// R1, WorkQueue, asynchronous persistence) on the bench's server, and
// consumed and acknowledged by another connection at the same time. It
// returns the time from the first publish to the last message taken; the
// stream is deleted afterwards.
func rawTransport(ctx context.Context, e *benchEnv, size int64) (time.Duration, error) {
	pub, err := controlplane.Connect(e.ControlPlane().URL(), "siterecovery-bench-raw-pub", e.logger)
	if err != nil {
		return 0, err
	}
	defer pub.Close()
	sub, err := controlplane.Connect(e.ControlPlane().URL(), "siterecovery-bench-raw-sub", e.logger)
	if err != nil {
		return 0, err
	}
	defer sub.Close()
	pjs, err := jetstream.New(pub)
	if err != nil {
		return 0, err
	}
	sjs, err := jetstream.New(sub)
	if err != nil {
		return 0, err
	}
	if err := natsbus.EnsureDeltaStream(ctx, pjs, transportSite); err != nil {
		return 0, err
	}
	stream := agentproto.DeltaStream(transportSite)
	defer func() { _ = pjs.DeleteStream(context.Background(), stream) }() // scratch: a failed delete leaves an empty stream
	cons, err := sjs.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Durable: "bench-raw", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1 << 16,
	})
	if err != nil {
		return 0, fmt.Errorf("raw transport consumer: %w", err)
	}
	msgs := int((size + mib - 1) / mib)
	got := make(chan error, 1)
	start := time.Now()
	go func() { got <- takeRaw(ctx, cons, msgs) }()
	if err := publishRaw(ctx, pjs, msgs); err != nil {
		return 0, err
	}
	if err := <-got; err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

func publishRaw(ctx context.Context, js jetstream.JetStream, msgs int) error {
	data := make([]byte, mib)
	fillRandom(data, 9)
	subject := agentproto.DeltaSubject(transportSite, "raw", "raw", 1)
	var pending []jetstream.PubAckFuture
	for i := range msgs {
		for len(pending) >= 128 {
			if err := waitPubAck(ctx, pending[0]); err != nil {
				return err
			}
			pending = pending[1:]
		}
		f, err := js.PublishMsgAsync(&nats.Msg{Subject: subject, Data: data, Header: nats.Header{jetstream.MsgIDHeader: []string{fmt.Sprint("raw-", i)}}})
		if err != nil {
			return fmt.Errorf("raw publish: %w", err)
		}
		pending = append(pending, f)
	}
	for _, f := range pending {
		if err := waitPubAck(ctx, f); err != nil {
			return err
		}
	}
	return nil
}

func waitPubAck(ctx context.Context, f jetstream.PubAckFuture) error {
	select {
	case <-f.Ok():
		return nil
	case err := <-f.Err():
		return fmt.Errorf("raw publish: %w", err)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func takeRaw(ctx context.Context, cons jetstream.Consumer, msgs int) error {
	it, err := cons.Messages(jetstream.PullMaxBytes(32 * mib))
	if err != nil {
		return fmt.Errorf("raw consume: %w", err)
	}
	defer it.Stop()
	for n := 0; n < msgs; n++ {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return fmt.Errorf("raw consume after %d messages: %w", n, err)
		}
		if err := m.Ack(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			return fmt.Errorf("raw ack: %w", err)
		}
	}
	return nil
}
