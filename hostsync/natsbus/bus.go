package natsbus

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/siterecovery/siterecovery/hostsync"
)

// Bus is the agent's messaging on one NATS connection, which stays the
// caller's (Bus never closes it). Safe for concurrent use.
type Bus struct {
	nc *nats.Conn
	js jetstream.JetStream
}

var (
	_ hostsync.ControlPlane   = (*Bus)(nil)
	_ hostsync.Peers          = (*Bus)(nil)
	_ hostsync.DeltaStreams   = (*Bus)(nil)
	_ hostsync.BatchPublisher = (*Bus)(nil)
)

// New makes the Bus of nc.
func New(nc *nats.Conn) (*Bus, error) {
	if nc == nil {
		return nil, ErrNoConnection
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("natsbus: %w", err)
	}
	return &Bus{nc: nc, js: js}, nil
}

// Transport is b as every part of the agent's transport.
func (b *Bus) Transport() hostsync.Transport {
	return hostsync.Transport{ControlPlane: b, Peers: b, Deltas: b, Batches: b}
}

// Request sends a request and waits for its reply until ctx ends
// (hostsync.ControlPlane, hostsync.Peers).
func (b *Bus) Request(ctx context.Context, subject string, data []byte) ([]byte, error) {
	msg, err := b.nc.RequestWithContext(ctx, subject, data)
	if err != nil {
		return nil, err
	}
	return msg.Data, nil
}

// Publish sends a core NATS message (hostsync.Peers).
func (b *Bus) Publish(subject string, data []byte) error { return b.nc.Publish(subject, data) }

// Subscribe calls handle with each message on subject, on the
// subscription's goroutine (hostsync.Peers).
func (b *Bus) Subscribe(subject string, handle func(subject string, data []byte)) (hostsync.Subscription, error) {
	sub, err := b.nc.Subscribe(subject, func(m *nats.Msg) { handle(m.Subject, m.Data) })
	if err != nil {
		return nil, err
	}
	return subscription{sub}, nil
}

// Serve answers the requests on subject, on the subscription's goroutine
// (hostsync.Peers).
func (b *Bus) Serve(subject string, answer func(data []byte, respond func(reply []byte) error)) (hostsync.Subscription, error) {
	sub, err := b.nc.Subscribe(subject, func(m *nats.Msg) { answer(m.Data, m.Respond) })
	if err != nil {
		return nil, err
	}
	return subscription{sub}, nil
}

// subscription is a core NATS subscription as a hostsync.Subscription.
type subscription struct{ sub *nats.Subscription }

// Unsubscribe stops the subscription; one gone already (unsubscribed, or
// its connection closed) is an error wrapping ErrSubscriptionClosed.
func (s subscription) Unsubscribe() error {
	err := s.sub.Unsubscribe()
	if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrBadSubscription) {
		return fmt.Errorf("%w: %w", hostsync.ErrSubscriptionClosed, err)
	}
	return err
}
