package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestScaleFlags: bad sizes are refused as bad usage.
func TestScaleFlags(t *testing.T) {
	for _, args := range [][]string{{"--hosts", "3"}, {"--vms", "0"}, {"--events", "10"}, {"extra"}} {
		var out, errb bytes.Buffer
		require.Equal(t, 2, runScaleCmd(context.Background(), args, &out, &errb), "%v: %s", args, errb.String())
	}
}

// TestScaleArgs runs `siterecovery scale` with the arguments in
// SR_SCALE_ARGS (e.g. "--vms 1000") and prints its table: the full run
// from go test, e.g. SR_SCALE_ARGS=" " go test -run TestScaleArgs -v -timeout 30m.
func TestScaleArgs(t *testing.T) {
	args, ok := os.LookupEnv("SR_SCALE_ARGS")
	if !ok {
		t.Skip("SR_SCALE_ARGS is not set")
	}
	var out bytes.Buffer
	code := runScaleCmd(context.Background(), strings.Fields(args), &out, os.Stderr)
	t.Logf("\n%s", out.String())
	require.Equal(t, 0, code)
}
