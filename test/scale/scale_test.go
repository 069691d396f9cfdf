package scale

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/test/bench"
)

// TestScaleQuick runs the scale at --quick --json sizes and requires
// every figure, with a positive value; it does not hold the figures to
// their targets (the machine is shared).
func TestScaleQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("the quick scale run protects 100 VMs and rebuilds 100k events")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	cfg := Quick(Defaults())
	cfg.Window, cfg.JSON, cfg.Data, cfg.Logger = 6*time.Second, true, t.TempDir(), zerolog.Nop()
	res, err := Run(ctx, cfg, &errb)
	require.NoError(t, err, "progress:\n%s", errb.String())
	require.NoError(t, Print(&out, cfg, res))
	got := map[string]bench.Figure{}
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		var f bench.Figure
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
