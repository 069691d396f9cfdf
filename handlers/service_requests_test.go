package handlers

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"4GiB": 4 << 30, "512MiB": 512 << 20, "10G": 10 << 30, "1048576": 1 << 20, "1024KB": 1024000} {
		got, err := ParseSize(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, bad := range []string{"", "-1G", "lots", "0", "3GB5", "1KB"} {
		_, err := ParseSize(bad)
		require.ErrorIs(t, err, events.ErrInvalidArgument, bad)
	}
}
