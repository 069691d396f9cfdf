package hostsync

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// The delta streams (docs/reference/subjects.md): SR_DELTA_<target_site> holds
// sr.delta.<target_site>.<source_host>.<vm>.<epoch>, WorkQueue retention,
// file storage. Every VM has one durable pull consumer on it, on the
// recovery host.

// DeltaStreams manages the delta streams and the VMs' durable consumers on
// them (natsbus implements it with JetStream; the streams' and consumers'
// configuration is the implementation's). A stream is named by its site
// (agentproto.DeltaStream), a VM's consumer and batches by site and VM
// (agentproto.DeltaConsumer, agentproto.DeltaFilter). Safe for concurrent use.
type DeltaStreams interface {
	// EnsureStream creates site's delta stream if it does not exist.
	// Idempotent: an existing stream is left as it is.
	EnsureStream(ctx context.Context, site string) error

	// CreateConsumer creates vm's durable consumer on site's stream, or
	// updates the existing one: every batch of vm (agentproto.DeltaFilter) from the
	// oldest on, in stream order, each delivered again when not settled
	// within ackWait. Idempotent.
	CreateConsumer(ctx context.Context, site, vm string, ackWait time.Duration) (BatchConsumer, error)

	// DeleteConsumer deletes vm's consumer: the batches it delivered and
	// nobody acknowledged are delivered again, in stream order, to the
	// next consumer. A missing consumer is an error wrapping
	// ErrConsumerNotFound, a missing stream ErrStreamNotFound.
	DeleteConsumer(ctx context.Context, site, vm string) error

	// Backlog tells how many of vm's batches its consumer has still to
	// deliver (pending) and has delivered unacknowledged (ackPending). A
	// missing consumer is an error wrapping ErrConsumerNotFound.
	Backlog(ctx context.Context, site, vm string) (pending, ackPending uint64, err error)

	// Purge removes every batch of vm from site's stream. A missing
	// stream is an error wrapping ErrStreamNotFound.
	Purge(ctx context.Context, site, vm string) error
}

// BatchPublisher publishes batches into the delta streams (natsbus: a
// JetStream asynchronous publish). Safe for concurrent use.
type BatchPublisher interface {
	// PublishBatch sends data on subject with the dedup id msgID (the
	// stream drops a message whose id it holds, within its duplicate
	// window) and returns without waiting for the stream, data copied: the
	// caller may reuse it at once. There is no retry: a publish that
	// fails, now or in its PublishAck, is the caller's to send again.
	PublishBatch(subject, msgID string, data []byte) (PublishAck, error)

	// MaxPayload is the largest message the server takes, headers
	// included.
	MaxPayload() int64
}

// PublishAck is the stream's answer to one PublishBatch.
type PublishAck interface {
	// Wait returns nil once the stream stored the batch (or dropped it as
	// a duplicate), an error naming the subject if it did not, or ctx's
	// error when ctx ends first. Call it from one goroutine.
	Wait(ctx context.Context) error
}

// cycleAck, sent by a recovery host on agentproto.AckSubject (JSON), says
// cycles up to Seq of Epoch are applied on the recovery host, for the
// protection enabled at log sequence Enable (an ack of an earlier
// protection of the VM is ignored).
type cycleAck struct {
	Enable uint64 `json:"enable"`
	Epoch  uint64 `json:"epoch"`
	Seq    uint64 `json:"seq"`
}

// maxInFlight bounds the bytes published and not yet acknowledged by
// JetStream, per delta stream (shared by the VMs shipping to it).
const maxInFlight = 128 << 20

// byteBudget is a byte count shared by the shippers of one stream. Safe
// for concurrent use.
type byteBudget struct {
	mu    sync.Mutex
	cond  *sync.Cond
	used  int
	limit int
}

func newByteBudget(limit int) *byteBudget {
	b := &byteBudget{limit: limit}
	b.cond = sync.NewCond(&b.mu)
	return b
}

// tryAcquire takes n bytes if they fit (always when nothing is in use).
func (b *byteBudget) tryAcquire(n int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used > 0 && b.used+n > b.limit {
		return false
	}
	b.used += n
	return true
}

// acquire waits until n bytes fit or ctx is done. A caller holding none of
// the budget may wait: the holders release without waiting for it.
func (b *byteBudget) acquire(ctx context.Context, n int) error {
	stop := context.AfterFunc(ctx, func() {
		b.mu.Lock()
		b.cond.Broadcast()
		b.mu.Unlock()
	})
	defer stop()
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.used > 0 && b.used+n > b.limit {
		if err := ctx.Err(); err != nil {
			return err
		}
		b.cond.Wait()
	}
	b.used += n
	return nil
}

func (b *byteBudget) release(n int) {
	b.mu.Lock()
	b.used -= n
	b.cond.Broadcast()
	b.mu.Unlock()
}

// SiteTag is the placement tag of a site's NATS servers, "site:<site>".
func SiteTag(site string) string { return "site:" + site }

// publisher publishes batches asynchronously, keeping less than
// maxInFlight bytes unacknowledged by the stream. Used by one goroutine.
// publish does not keep data: the caller may reuse it once it returns.
type publisher struct {
	batches BatchPublisher
	budget  *byteBudget
	pending []pendingPub
}

type pendingPub struct {
	ack  PublishAck
	size int
}

// publish sends data with a dedup id, first waiting for older publishes
// when the stream's window is full: its own, then (holding none) others'.
// A failed publish is not retried (BatchPublisher): the shipper sends it
// again.
func (p *publisher) publish(ctx context.Context, subject, msgID string, data []byte) error {
	for !p.budget.tryAcquire(len(data)) {
		if len(p.pending) == 0 {
			if err := p.budget.acquire(ctx, len(data)); err != nil {
				return err
			}
			break
		}
		if err := p.waitOldest(ctx); err != nil {
			return err
		}
	}
	ack, err := p.batches.PublishBatch(subject, msgID, data)
	if err != nil {
		p.budget.release(len(data))
		return fmt.Errorf("publish %s: %w", subject, err)
	}
	p.pending = append(p.pending, pendingPub{ack: ack, size: len(data)})
	return nil
}

func (p *publisher) waitOldest(ctx context.Context) error {
	pp := p.pending[0]
	p.pending = p.pending[1:]
	defer p.budget.release(pp.size)
	return pp.ack.Wait(ctx)
}

// inFlight is the number of publishes not yet acknowledged or waited for.
func (p *publisher) inFlight() int { return len(p.pending) }

// flush waits until every publish is acknowledged, returning the first
// error (the remaining ones are still waited for).
func (p *publisher) flush(ctx context.Context) error { return p.flushTo(ctx, 0) }

// flushTo waits until at most keep publishes, the newest, are not yet
// acknowledged, returning the first error (the remaining older ones are
// still waited for).
func (p *publisher) flushTo(ctx context.Context, keep int) error {
	var first error
	for len(p.pending) > max(keep, 0) {
		if err := p.waitOldest(ctx); err != nil && first == nil {
			first = err
		}
	}
	return first
}
