package world

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/siterecovery/siterecovery/hostsync"
	"github.com/siterecovery/siterecovery/hostsync/nbd"
)

// NBDTarget splits an nbd+unix URL into socket and export.
func NBDTarget(raw string) (socket, export string, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", err
	}
	socket = u.Query().Get("socket")
	if u.Scheme != "nbd+unix" || socket == "" {
		return "", "", fmt.Errorf("%q is not an nbd+unix URL with a socket", raw)
	}
	return socket, strings.TrimPrefix(u.Path, "/"), nil
}

// DialURL connects the project's NBD client to an nbd+unix URL.
func DialURL(nbdURL string) (*nbd.Client, error) {
	socket, export, err := NBDTarget(nbdURL)
	if err != nil {
		return nil, err
	}
	return nbd.Dial("unix", socket, export)
}

// DialWait connects to export on the Unix socket sock, retrying until it
// is served or d has passed.
func DialWait(ctx context.Context, sock, export string, d time.Duration) (*nbd.Client, error) {
	deadline := time.Now().Add(d)
	for {
		c, err := nbd.Dial("unix", sock, export)
		if err == nil {
			return c, nil
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

// DialDisk connects to the VM's disk served by host's agent, waiting up
// to 30 s for the agent to serve it.
func (w *World) DialDisk(ctx context.Context, host, vm, disk string) (*nbd.Client, error) {
	a := w.agents[host]
	if a == nil {
		return nil, fmt.Errorf("no agent runs on %s", host)
	}
	return DialWait(ctx, a.SocketPath(), hostsync.ExportName(vm, disk), 30*time.Second)
}

// ReadExport reads a whole disk of size bytes through an NBD URL.
func ReadExport(nbdURL string, size int64) ([]byte, error) {
	c, err := DialURL(nbdURL)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	buf := make([]byte, size)
	for off := int64(0); off < size; off += 4 << 20 {
		end := min(size, off+4<<20)
		if _, err := c.ReadAt(buf[off:end], off); err != nil {
			return nil, err
		}
	}
	return buf, nil
}
