package natsbus

import "errors"

// ErrNoConnection means New was given no NATS connection.
var ErrNoConnection = errors.New("natsbus: no NATS connection")

// The errors the adapter returns to the agent are hostsync's sentinels
// (hostsync.ErrStreamNotFound, ErrConsumerNotFound, ErrNoBatch,
// ErrSubscriptionClosed) wrapped around the client's own error, which
// stays in the chain for errors.Is (e.g. jetstream.ErrConsumerNotFound).
