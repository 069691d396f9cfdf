package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

// TestBenchSmoke runs every end-to-end benchmark (siterecovery bench --smoke --json) at tiny sizes and checks
// that each figure is present and parseable, with its baseline and target.
// The targets are reported by the benchmark, not asserted here: the
// figures of a tiny run on a shared machine mean little.
func TestBenchSmoke(t *testing.T) {
	for _, tool := range []string{"rsync", "qemu-nbd"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s missing (make test-deps installs it)", tool)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	md := filepath.Join(t.TempDir(), "benchmarks.md")
	require.NoError(t, os.WriteFile(md, []byte("# Benchmarks\n\nhand-written text\n"), 0o600))
	var stdout, stderr bytes.Buffer
	err := Run(ctx, Config{Smoke: true, JSON: true, Markdown: md, Logger: zerolog.Nop()}, &stdout, &stderr)
	require.NoError(t, err, "stderr: %s", stderr.String())

	figs := map[string]Figure{}
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		var raw map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &raw), "line %q", sc.Text())
		for _, k := range []string{"name", "value", "unit", "baseline", "ratio", "target"} {
			require.Contains(t, raw, k, "line %q", sc.Text())
		}
		var f Figure
		require.NoError(t, json.Unmarshal(sc.Bytes(), &f))
		figs[f.Name] = f
	}
	want := []string{"command_appends", "projection_replay", "nbd_write_seq_1MiB", "nbd_write_rand_4KiB",
		"initial_replication", "delta_cycle", "rpo_under_load", "planned_failover_1vm", "planned_failover_50vms", "resync_bytes"}
	require.Len(t, figs, len(want), "figures: %v", figs)
	for _, name := range want {
		f, ok := figs[name]
		require.True(t, ok, "figure %s missing", name)
		require.Greater(t, f.Value, 0.0, "%s value", name)
		require.Greater(t, f.Baseline, 0.0, "%s baseline", name)
		require.Greater(t, f.Ratio, 0.0, "%s ratio", name)
		require.NotEmpty(t, f.Unit, name)
		require.NotEmpty(t, f.Target, name)
	}

	doc, err := os.ReadFile(md)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(doc), "# Benchmarks\n\nhand-written text\n"), "hand-written part kept:\n%s", doc)
	for _, name := range want {
		require.Contains(t, string(doc), "`"+name+"`")
	}
	// a second run rewrites the generated section in place
	require.NoError(t, writeMarkdown(Config{Markdown: md, Smoke: true}, []Figure{figs["delta_cycle"]}, time.Second))
	doc, err = os.ReadFile(md)
	require.NoError(t, err)
	require.Equal(t, 1, strings.Count(string(doc), mdBegin))
	require.NotContains(t, string(doc), "`rpo_under_load`")
}
