package hostsync

import "errors"

// Sentinel errors a Transport's parts return (natsbus maps the NATS
// client's errors to them), so that the agent decides on what happened
// without knowing the messaging underneath. Match them with errors.Is: an
// implementation wraps them around its own error, which stays in the chain.
var (
	// ErrStreamNotFound means the site's delta stream does not exist.
	ErrStreamNotFound = errors.New("delta stream not found")

	// ErrConsumerNotFound means the VM's consumer on the delta stream does
	// not exist (not made yet, or deleted).
	ErrConsumerNotFound = errors.New("delta consumer not found")

	// ErrNoBatch means BatchFeed.Next waited its time and no batch came;
	// the feed goes on.
	ErrNoBatch = errors.New("no batch came")

	// ErrSubscriptionClosed means a Subscription is no longer in force:
	// unsubscribed already, or its connection is closed.
	ErrSubscriptionClosed = errors.New("subscription closed")
)
