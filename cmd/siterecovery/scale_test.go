package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestScaleQuick runs `siterecovery scale --quick --json` and requires
// every figure, with a positive value; it does not hold the figures to
// their targets (the machine is shared).
func TestScaleQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("the quick scale run protects 100 VMs and rebuilds 100k events")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	code := runScaleCmd(ctx, []string{"--quick", "--json", "--window", "6s", "--data", t.TempDir()}, &out, &errb)
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
	got := map[string]figure{}
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		var f figure
		require.NoError(t, json.Unmarshal(sc.Bytes(), &f), sc.Text())
		got[f.Name] = f
	}
	for _, name := range []string{"serve resident memory", "serve Go heap in use", "events appended at steady state",
		"status query p50", "status query p99", "vm show query p50", "vm show query p99",
		"recovery_point report p50", "recovery_point report p99",
		"process CPU at steady state", "projection rebuild of 100000 events", "projection rebuild CPU time", "projection rebuild rate",
		"status query in process p50", "status query CPU per request", "vm show query in process p50", "vm show query CPU per request"} {
		f, ok := got[name]
		require.True(t, ok, "figure %q missing from %v", name, got)
		require.Greater(t, f.Value, 0.0, name)
		require.NotEmpty(t, f.Unit, name)
	}
	for _, name := range []string{"serve resident memory", "status query p50", "status query p99",
		"vm show query p50", "vm show query p99", "projection rebuild of 100000 events"} {
		require.NotEmpty(t, got[name].Target, "%s has no target", name)
	}
}

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
