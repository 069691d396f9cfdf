package hostsync

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func dialTestNBD(tb testing.TB, network, addr, export string, structured bool) *NBDClient {
	tb.Helper()
	c, err := dialNBDClient(network, addr, export, structured)
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = c.nc.Close() }) // may already be closed by the test
	return c
}
