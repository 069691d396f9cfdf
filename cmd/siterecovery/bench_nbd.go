package main

import (
	"context"
	"fmt"
	"time"

	"github.com/siterecovery/siterecovery/hostsync/nbd"
)

// benchNBD is the benchmarks' NBD client (hostsync/nbd's, simple replies): it
// writes with many requests in flight and flushes, against the agent's
// export or qemu-nbd. One goroutine uses it at a time.
type benchNBD struct {
	*nbd.Client
}

// writes writes block(i) at offs[i] with up to depth requests in flight,
// then flushes: when it returns nil every write is acknowledged durable.
func (c *benchNBD) writes(offs []int64, block func(i int) []byte, depth int) error {
	return c.WriteBlocks(offs, block, depth)
}

// dialBenchNBDWait connects to export on the Unix socket sock, retrying
// until it is served or d has passed.
func dialBenchNBDWait(ctx context.Context, sock, export string, d time.Duration) (*benchNBD, error) {
	deadline := time.Now().Add(d)
	for {
		c, err := nbd.Dial("unix", sock, export)
		if err == nil {
			return &benchNBD{c}, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("export %s on %s not served within %s: %w", export, sock, d, err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond): // waiting for the server, bounded by the deadline
		}
	}
}
