package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestAgentUsage(t *testing.T) {
	for _, args := range [][]string{
		{},                               // --host is required
		{"--host", "bad host"},           // not a name
		{"--host", "hv01", "extra"},      // no arguments
		{"--host", "hv01", "--data", ""}, // no data dir
		{"--host", "hv01", "--nope"},     // unknown flag
		{"--host", "hv01", "--log-level", "loud"},
	} {
		var out, errOut bytes.Buffer
		require.Equal(t, 2, runAgent(context.Background(), args, &out, &errOut), "%q", args)
		require.NotEmpty(t, errOut.String(), "%q", args)
	}
	var out, errOut bytes.Buffer
	require.Equal(t, 0, runAgent(context.Background(), []string{"--help"}, &out, &errOut))
}

func TestAgentFailsWithoutNATS(t *testing.T) {
	var out, errOut bytes.Buffer
	code := runAgent(context.Background(), []string{"--host", "hv01", "--nats", "nats://127.0.0.1:1", "--data", t.TempDir()}, &out, &errOut)
	require.Equal(t, 1, code)
	require.Contains(t, errOut.String(), "connect to NATS")
}
