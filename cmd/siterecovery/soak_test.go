package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestSoakOneCycle runs `siterecovery soak --duration 20s --vms 2`: one
// cycle (writes, planned failover, writes back, failback), every check
// passing.
func TestSoakOneCycle(t *testing.T) {
	if testing.Short() {
		t.Skip("the soak runs a failover and failback of two VMs")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	code := runSoakCmd(ctx, []string{"--duration", "20s", "--vms", "2", "--disk-mib", "8", "--data", t.TempDir()}, &out, &errb)
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
	require.Contains(t, out.String(), "soak summary: PASSED")
	require.Regexp(t, `cycles +[1-9]`, out.String())
	require.Regexp(t, `failures +0`, out.String())
	t.Log(out.String())
}

// TestSoakFlags: bad flags are refused as bad usage.
func TestSoakFlags(t *testing.T) {
	for _, args := range [][]string{{"--vms", "0"}, {"--duration", "0s"}, {"--disk-mib", "1"}, {"extra"}} {
		var out, errb bytes.Buffer
		require.Equal(t, 2, runSoakCmd(context.Background(), args, &out, &errb), "%v: %s", args, errb.String())
	}
}

// TestSoakArgs runs `siterecovery soak` with the arguments in SR_SOAK_ARGS
// (e.g. "--duration 10m"), printing its output as it goes.
func TestSoakArgs(t *testing.T) {
	args, ok := os.LookupEnv("SR_SOAK_ARGS")
	if !ok {
		t.Skip("SR_SOAK_ARGS is not set")
	}
	require.Equal(t, 0, runSoakCmd(context.Background(), strings.Fields(args), os.Stdout, os.Stderr))
}
