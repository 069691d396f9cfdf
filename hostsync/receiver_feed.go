package hostsync

import (
	"context"
	"time"
)

// What the receiver (receiver.go) needs of a VM's consumer on its delta
// stream: a feed of deliveries it settles one by one, acknowledging a batch
// only once the cycle it belongs to is durably applied. natsbus implements
// these with a JetStream pull consumer.

// BatchConsumer is a VM's durable consumer of its batches, as
// DeltaStreams.CreateConsumer made it. Safe for concurrent use.
type BatchConsumer interface {
	// Pull starts a feed of the VM's batches in stream order, keeping at
	// most maxBytes of them on their way ahead of Next (the pull budget a
	// recovery host's consumers share: pullShare). Each call starts a new
	// feed; stop the previous one first.
	Pull(maxBytes int) (BatchFeed, error)
}

// BatchFeed is one pull of a BatchConsumer. Next is called by one
// goroutine; Stop may be called from any goroutine, more than once.
type BatchFeed interface {
	// Next returns the next delivered batch, waiting at most wait: an
	// error wrapping ErrNoBatch when none came (the feed goes on). Any
	// other error ends the feed: Pull again.
	Next(wait time.Duration) (Delivery, error)

	// Stop ends the feed. The batches already delivered stay the
	// receiver's to settle; those on their way and not taken come again
	// after the consumer's ack wait.
	Stop()
}

// Delivery is one batch a BatchFeed delivered: where it was published,
// its bytes, how often it came, and how to settle it (Ack, AckSync, Nak,
// Term; InProgress before). A delivery not settled before the consumer's
// ack wait comes again; so does one whose settling failed (its error is
// the transport's, and the receiver does not act on it).
type Delivery struct {
	// Subject is the delta subject the batch was published on
	// (DeltaSubject: its last token is the epoch).
	Subject string
	// Data is the encoded batch (batch.go).
	Data []byte
	// Delivered counts the deliveries of this batch, 1 the first time;
	// 0 when the server did not say.
	Delivered uint64
	// Acker settles the delivery with the consumer.
	Acker Acker
}

// Acker settles one delivery with its consumer. Exactly one of Ack,
// AckSync, Nak and Term settles it (a later call is an error or ignored);
// InProgress may come any number of times before. Used by the receiver's
// goroutine.
type Acker interface {
	// Ack says the batch is applied: never deliver it again. It returns
	// once the ack is sent, not confirmed.
	Ack() error
	// AckSync acks and waits for the server's confirmation, bounded by
	// ctx: the acks sent before it are processed too.
	AckSync(ctx context.Context) error
	// Nak asks for the batch again after delay (0: at once).
	Nak(delay time.Duration) error
	// InProgress says the batch is still being worked on: its ack wait
	// starts again.
	InProgress() error
	// Term says never deliver the batch again, unapplied (garbage, a stale
	// epoch, a batch after a gap).
	Term() error
}

// Ack is d.Acker.Ack.
func (d Delivery) Ack() error { return d.Acker.Ack() }

// AckSync is d.Acker.AckSync.
func (d Delivery) AckSync(ctx context.Context) error { return d.Acker.AckSync(ctx) }

// Nak is d.Acker.Nak.
func (d Delivery) Nak(delay time.Duration) error { return d.Acker.Nak(delay) }

// InProgress is d.Acker.InProgress.
func (d Delivery) InProgress() error { return d.Acker.InProgress() }

// Term is d.Acker.Term.
func (d Delivery) Term() error { return d.Acker.Term() }
