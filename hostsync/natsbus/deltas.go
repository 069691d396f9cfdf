package natsbus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/siterecovery/siterecovery/hostsync"
)

// maxAckPending bounds the batches a VM's consumer has delivered and not
// seen settled; far above what the pull budget lets through, so the pull
// budget is what holds the flow.
const maxAckPending = 1 << 16

// EnsureStream creates site's delta stream if it does not exist
// (hostsync.DeltaStreams; EnsureDeltaStream).
func (b *Bus) EnsureStream(ctx context.Context, site string) error {
	return hostsync.EnsureDeltaStream(ctx, b.js, site)
}

// CreateConsumer creates or updates vm's durable pull consumer on site's
// delta stream: explicit acks, every batch from the first
// (hostsync.DeltaStreams).
func (b *Bus) CreateConsumer(ctx context.Context, site, vm string, ackWait time.Duration) (hostsync.BatchConsumer, error) {
	cons, err := b.js.CreateOrUpdateConsumer(ctx, hostsync.DeltaStream(site), jetstream.ConsumerConfig{
		Durable:       hostsync.DeltaConsumer(vm),
		FilterSubject: hostsync.DeltaFilter(site, vm),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		MaxAckPending: maxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, notFound(err)
	}
	return consumer{cons}, nil
}

// DeleteConsumer deletes vm's consumer (hostsync.DeltaStreams).
func (b *Bus) DeleteConsumer(ctx context.Context, site, vm string) error {
	return notFound(b.js.DeleteConsumer(ctx, hostsync.DeltaStream(site), hostsync.DeltaConsumer(vm)))
}

// Backlog reads vm's consumer's info (hostsync.DeltaStreams).
func (b *Bus) Backlog(ctx context.Context, site, vm string) (pending, ackPending uint64, err error) {
	cons, err := b.js.Consumer(ctx, hostsync.DeltaStream(site), hostsync.DeltaConsumer(vm))
	if err != nil {
		return 0, 0, notFound(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return 0, 0, notFound(err)
	}
	return info.NumPending, uint64(max(info.NumAckPending, 0)), nil
}

// Purge removes vm's batches from site's delta stream
// (hostsync.DeltaStreams).
func (b *Bus) Purge(ctx context.Context, site, vm string) error {
	name := hostsync.DeltaStream(site)
	s, err := b.js.Stream(ctx, name)
	if err != nil {
		return fmt.Errorf("delta stream %s: %w", name, notFound(err))
	}
	return s.Purge(ctx, jetstream.WithPurgeSubject(hostsync.DeltaFilter(site, vm)))
}

// notFound wraps the client's not-found errors in hostsync's sentinels.
func notFound(err error) error {
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		return fmt.Errorf("%w: %w", hostsync.ErrConsumerNotFound, err)
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return fmt.Errorf("%w: %w", hostsync.ErrStreamNotFound, err)
	}
	return err
}
