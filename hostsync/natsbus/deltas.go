package natsbus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/siterecovery/siterecovery/events/agentproto"
	"github.com/siterecovery/siterecovery/hostsync"
)

// EnsureDeltaStream creates the delta stream of site if it does not exist
// (idempotent: an existing stream is left as it is), unplaced and R1.
func EnsureDeltaStream(ctx context.Context, js jetstream.JetStream, site string) error {
	return EnsureDeltaStreamAt(ctx, js, site, DeltaStreamConfig{})
}

// DeltaStreamConfig says how many copies of a delta stream a cluster keeps
// and where (docs/operations.md: each SR_DELTA_<site> at its site).
type DeltaStreamConfig struct {
	// Replicas of the stream (default 1: the source keeps each cycle until
	// it is applied, so a lost copy is shipped again).
	Replicas int
	// Tags place the stream on servers carrying all of them, e.g.
	// hostsync.SiteTag(site); none: anywhere.
	Tags []string
}

// errCodeNoSuitablePeers is the JetStream API error code of a placement
// no server of the cluster can satisfy (no server carries the tags).
const errCodeNoSuitablePeers jetstream.ErrorCode = 10005

// EnsureDeltaStreamAt creates the delta stream of site with cfg if it does
// not exist (idempotent: an existing stream is left as it is, whatever its
// placement). A cluster with no server to satisfy cfg.Tags fails it with
// an error wrapping the *jetstream.APIError (code 10005).
func EnsureDeltaStreamAt(ctx context.Context, js jetstream.JetStream, site string, cfg DeltaStreamConfig) error {
	name := agentproto.DeltaStream(site)
	if _, err := js.Stream(ctx, name); err == nil {
		return nil
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("delta stream %s: %w", name, err)
	}
	if cfg.Replicas < 0 {
		return fmt.Errorf("delta stream %s: %d replicas", name, cfg.Replicas)
	}
	sc := jetstream.StreamConfig{
		Name:       name,
		Subjects:   []string{agentproto.DeltaStreamSubjects(site)},
		Retention:  jetstream.WorkQueuePolicy,
		Storage:    jetstream.FileStorage,
		Discard:    jetstream.DiscardNew,
		Duplicates: 2 * time.Minute,
		Replicas:   max(cfg.Replicas, 1),
	}
	if sc.Replicas == 1 {
		// The delta stream needs no fsync of its own: the source keeps
		// every cycle until the recovery host reports it applied (end to
		// end), so a batch a power loss takes from the stream is sent
		// again; SR_EVENTS keeps sync_interval: always.
		sc.PersistMode = jetstream.AsyncPersistMode
	}
	if len(cfg.Tags) > 0 {
		sc.Placement = &jetstream.Placement{Tags: cfg.Tags}
	}
	_, err := js.CreateStream(ctx, sc)
	if err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return fmt.Errorf("create delta stream %s: %w", name, err)
	}
	return nil
}

// EnsureSiteDeltaStream creates the delta stream of site, R1, placed on the
// servers tagged hostsync.SiteTag(site); when no server can take it (a
// cluster without site tags, or the site's servers are down) it creates it
// unplaced instead. placed tells whether the stream, new or existing, asks
// for the site's servers. A single server accepts the placement and keeps
// the stream itself.
func EnsureSiteDeltaStream(ctx context.Context, js jetstream.JetStream, site string) (placed bool, err error) {
	tag := hostsync.SiteTag(site)
	err = EnsureDeltaStreamAt(ctx, js, site, DeltaStreamConfig{Replicas: 1, Tags: []string{tag}})
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeNoSuitablePeers {
		err = EnsureDeltaStream(ctx, js, site)
	}
	if err != nil {
		return false, err
	}
	s, err := js.Stream(ctx, agentproto.DeltaStream(site))
	if err != nil {
		return false, fmt.Errorf("delta stream %s: %w", agentproto.DeltaStream(site), err)
	}
	p := s.CachedInfo().Config.Placement
	return p != nil && slices.Contains(p.Tags, tag), nil
}

// maxAckPending bounds the batches a VM's consumer has delivered and not
// seen settled; far above what the pull budget lets through, so the pull
// budget is what holds the flow.
const maxAckPending = 1 << 16

// EnsureStream creates site's delta stream if it does not exist
// (hostsync.DeltaStreams; EnsureDeltaStream).
func (b *Bus) EnsureStream(ctx context.Context, site string) error {
	return EnsureDeltaStream(ctx, b.js, site)
}

// CreateConsumer creates or updates vm's durable pull consumer on site's
// delta stream: explicit acks, every batch from the first
// (hostsync.DeltaStreams).
func (b *Bus) CreateConsumer(ctx context.Context, site, vm string, ackWait time.Duration) (hostsync.BatchConsumer, error) {
	cons, err := b.js.CreateOrUpdateConsumer(ctx, agentproto.DeltaStream(site), jetstream.ConsumerConfig{
		Durable:       agentproto.DeltaConsumer(vm),
		FilterSubject: agentproto.DeltaFilter(site, vm),
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
	return notFound(b.js.DeleteConsumer(ctx, agentproto.DeltaStream(site), agentproto.DeltaConsumer(vm)))
}

// Backlog reads vm's consumer's info (hostsync.DeltaStreams).
func (b *Bus) Backlog(ctx context.Context, site, vm string) (pending, ackPending uint64, err error) {
	cons, err := b.js.Consumer(ctx, agentproto.DeltaStream(site), agentproto.DeltaConsumer(vm))
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
	name := agentproto.DeltaStream(site)
	s, err := b.js.Stream(ctx, name)
	if err != nil {
		return fmt.Errorf("delta stream %s: %w", name, notFound(err))
	}
	return s.Purge(ctx, jetstream.WithPurgeSubject(agentproto.DeltaFilter(site, vm)))
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
