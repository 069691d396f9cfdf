package nbd

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func dialTest(tb testing.TB, network, addr, export string, structured bool) *Client {
	tb.Helper()
	c, err := dial(network, addr, export, structured)
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = c.nc.Close() }) // may already be closed by the test
	return c
}
