package natsbus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/siterecovery/siterecovery/hostsync"
)

// PublishBatch publishes data asynchronously with its Nats-Msg-Id
// (hostsync.BatchPublisher).
//
// No retry by the client: it would send msg.Data again later, and the
// caller reuses data once PublishBatch returns (the client has copied it
// into the connection's buffer). A publish that fails is sent again by
// the agent's shipper (a cycle is kept until applied; an initial
// replication goes on from the last acknowledged group).
func (b *Bus) PublishBatch(subject, msgID string, data []byte) (hostsync.PublishAck, error) {
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, msgID)
	fut, err := b.js.PublishMsgAsync(msg, jetstream.WithRetryAttempts(0))
	if err != nil {
		return nil, err
	}
	return pubAck{fut}, nil
}

// MaxPayload is the connection's max payload (hostsync.BatchPublisher).
func (b *Bus) MaxPayload() int64 { return b.nc.MaxPayload() }

// pubAck is a JetStream publish's future as a hostsync.PublishAck.
type pubAck struct{ fut jetstream.PubAckFuture }

// Wait waits for the stream's acknowledgement.
func (p pubAck) Wait(ctx context.Context) error {
	select {
	case <-p.fut.Ok():
		return nil
	case err := <-p.fut.Err():
		return fmt.Errorf("publish %s: %w", p.fut.Msg().Subject, err)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// consumer is a JetStream consumer as a hostsync.BatchConsumer.
type consumer struct{ cons jetstream.Consumer }

// Pull starts a Messages iterator pulling at most maxBytes at a time.
func (c consumer) Pull(maxBytes int) (hostsync.BatchFeed, error) {
	it, err := c.cons.Messages(jetstream.PullMaxBytes(maxBytes))
	if err != nil {
		return nil, notFound(err)
	}
	return feed{it}, nil
}

// feed is a JetStream Messages iterator as a hostsync.BatchFeed.
type feed struct{ it jetstream.MessagesContext }

// Next takes the next message; the client's timeout is hostsync.ErrNoBatch.
func (f feed) Next(wait time.Duration) (hostsync.Delivery, error) {
	msg, err := f.it.Next(jetstream.NextMaxWait(wait))
	if errors.Is(err, nats.ErrTimeout) {
		return hostsync.Delivery{}, fmt.Errorf("%w: %w", hostsync.ErrNoBatch, err)
	}
	if err != nil {
		return hostsync.Delivery{}, err
	}
	return delivery(msg), nil
}

// Stop stops the iterator (safe twice, from any goroutine).
func (f feed) Stop() { f.it.Stop() }

// delivery is msg as the receiver sees it.
func delivery(msg jetstream.Msg) hostsync.Delivery {
	d := hostsync.Delivery{Subject: msg.Subject(), Data: msg.Data(), Acker: acker{msg}}
	if meta, err := msg.Metadata(); err == nil {
		d.Delivered = meta.NumDelivered
	}
	return d
}

// acker settles a JetStream message (hostsync.Acker).
type acker struct{ msg jetstream.Msg }

// Ack is a plain ack (+ACK), not confirmed.
func (a acker) Ack() error { return a.msg.Ack() }

// AckSync is a double ack: the server confirms it.
func (a acker) AckSync(ctx context.Context) error { return a.msg.DoubleAck(ctx) }

// Nak is -NAK, with the delay when there is one.
func (a acker) Nak(delay time.Duration) error {
	if delay <= 0 {
		return a.msg.Nak()
	}
	return a.msg.NakWithDelay(delay)
}

// InProgress is +WPI: the ack wait starts again.
func (a acker) InProgress() error { return a.msg.InProgress() }

// Term is +TERM: never delivered again.
func (a acker) Term() error { return a.msg.Term() }
