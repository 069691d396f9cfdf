package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/test/demo"
)

// TestDemo runs `siterecovery demo` as make demo does, in a temporary data
// directory of its own, and requires its own verification to pass, a
// narrative for people (no log line in it; the status it prints shows both
// hosts reachable, with their last heartbeat) and the components' logs in
// the file it names at the start and at the end, the only thing left of
// its data.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo runs the whole system for about a minute")
	}
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // where the demo makes its data directory
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	code := runDemo(ctx, nil, &out, &errb)
	narrative := out.String()
	require.Equal(t, 0, code, "demo output:\n%s\n%s", narrative, errb.String())
	require.Contains(t, narrative, "demo verified")
	require.GreaterOrEqual(t, strings.Count(narrative, "verified: "), 4, narrative)

	require.Empty(t, errb.String(), "the demo writes nothing but its narrative")
	for _, line := range strings.Split(narrative, "\n") {
		require.False(t, strings.HasPrefix(strings.TrimSpace(line), "{"), "a JSON line in the narrative: %s", line)
		require.NotContains(t, line, `"level":`, "a log line in the narrative")
	}
	require.Contains(t, narrative, "hosts: 2 (2 reachable, 0 unreachable)")
	require.Regexp(t, `(?m)^\s+hv01\s+primary\s+reachable\s+\S+Z \(\d+s ago\)`, narrative)
	require.Regexp(t, `(?m)^\s+hv02\s+secondary\s+reachable\s+\S+Z \(\d+s ago\)`, narrative)
	require.Contains(t, narrative, "no divergence")

	said := regexp.MustCompile(`logs of the control plane and the agents: (\S+)`).FindAllStringSubmatch(narrative, -1)
	require.Len(t, said, 2, "the log file is named at the start and at the end")
	path := said[0][1]
	require.Equal(t, path, said[1][1])
	require.Equal(t, demo.LogFile, filepath.Base(path))
	require.True(t, strings.HasPrefix(path, tmp), path)
	logs, err := os.ReadFile(path)
	require.NoError(t, err)
	for _, want := range []string{`"component":"agent","host":"hv01"`, `"component":"agent","host":"hv02"`, `"component":"process-manager"`} {
		require.Contains(t, string(logs), want)
	}
	for _, line := range strings.Split(string(logs), "\n") {
		if !strings.Contains(line, `"level":"warn"`) && !strings.Contains(line, `"level":"error"`) {
			continue
		}
		for _, alarm := range []string{"disk needs resync", "former source diverged", "resync peer unavailable", "stale_epoch"} {
			require.NotContains(t, line, alarm, "a false alarm on the happy path (issue 17)")
		}
	}
	require.Regexp(t, `demo\.log \(\d+ lines: \d+ warnings, \d+ errors\)`, narrative)
	left, err := os.ReadDir(filepath.Dir(path))
	require.NoError(t, err)
	require.Len(t, left, 1, "the demo's data is removed but for its log")
}
