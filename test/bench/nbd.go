package bench

import (
	"context"
	"time"

	"github.com/siterecovery/siterecovery/hostsync/nbd"
	"github.com/siterecovery/siterecovery/test/world"
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
	c, err := world.DialWait(ctx, sock, export, d)
	if err != nil {
		return nil, err
	}
	return &benchNBD{c}, nil
}
