package controlplane

import (
	"fmt"
	"net"
	"strconv"
	"time"
)

// Config is the configuration of the control plane: what `siterecovery
// serve` runs, from its flags (docs/operations.md).
type Config struct {
	Data     string
	NATSURL  string
	Listen   string
	HTTP     string
	Replicas int
	// FailoverTimeout bounds each failover step (0: the process manager's
	// default, 10 minutes).
	FailoverTimeout time.Duration
	// TLSDir: mTLS for NATS, HTTPS and bearer tokens (docs/security.md).
	TLSDir string
}

// SplitHostPort splits an address into its host and port.
func SplitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("port %q is not a number from 0 to 65535", p)
	}
	return host, port, nil
}
