package hostsync

import "context"

// Peers carries the agent's plain (not stored) messages other than its
// reports: the cycle acknowledgements a recovery host sends the source host
// (ackSubject, streams.go), the leaves requests between agents
// (leavesSubject, resync.go) and the verify requests of the control plane
// (VerifySubject, verify.go); docs/security.md lists who may send which.
// Delivery is at most once: a message sent while nobody listens is lost,
// and each use copes (an ack comes again with the next cycle, a request is
// asked again). Safe for concurrent use. natsbus implements it with core
// NATS.
type Peers interface {
	// Publish sends data on subject and returns without waiting for
	// anyone; an error means it was not sent.
	Publish(subject string, data []byte) error

	// Subscribe calls handle with every message on subject (wildcards
	// allowed) until the Subscription is unsubscribed. handle runs on one
	// goroutine per subscription, one message at a time in arrival order,
	// and must not keep data after it returns.
	Subscribe(subject string, handle func(subject string, data []byte)) (Subscription, error)

	// Request sends data on subject and returns the one reply's data,
	// waiting until ctx ends. Nobody serving subject, or no reply before
	// ctx ends, is an error.
	Request(ctx context.Context, subject string, data []byte) ([]byte, error)

	// Serve answers the requests on subject: answer gets each request's
	// data and a respond function to call once with the reply (its error:
	// the reply was not sent). answer runs as Subscribe's handle does, so
	// a slow answer holds the next request of the same subscription.
	Serve(subject string, answer func(data []byte, respond func(reply []byte) error)) (Subscription, error)
}

// Subscription is a Peers.Subscribe or Peers.Serve in force.
type Subscription interface {
	// Unsubscribe stops the deliveries (a handler already running
	// finishes). A second call, or one after the connection closed,
	// returns an error wrapping ErrSubscriptionClosed.
	Unsubscribe() error
}
