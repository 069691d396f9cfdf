package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/jetstream"
	"github.com/siterecovery/siterecovery/events/jetstream/jstest"
	"github.com/siterecovery/siterecovery/events/subscribe"
	"github.com/siterecovery/siterecovery/handlers"
	"github.com/siterecovery/siterecovery/projections"
)

// mustStartAutomationPlane is a control plane with the automation handlers,
// the automations read model and a runner, wired as serve wires them.
func mustStartAutomationPlane(t *testing.T) *opFixture {
	t.Helper()
	ctx := context.Background()
	srv := jstest.MustRunServer(t)
	nc := jstest.MustConnect(t, jstest.URL(srv))
	log, err := jetstream.Open(ctx, nc, jetstream.Config{Logger: zerolog.Nop()})
	require.NoError(t, err)
	t.Cleanup(func() { log.Close() })
	rules := projections.NewAutomations(log, zerolog.Nop())
	require.NoError(t, rules.Open(ctx))
	t.Cleanup(func() { rules.Close() })
	svc := handlers.New(log, nil, zerolog.Nop())
	svc.Extend(handlers.NewAutomationHandlers(log, rules, zerolog.Nop()))
	require.NoError(t, svc.Open(ctx, nc))
	t.Cleanup(func() { svc.Close(ctx) })
	inbox, err := subscribe.OpenDurable(ctx, nc, subscribe.DurableConfig{Name: handlers.AutomationConsumer})
	require.NoError(t, err)
	runner := handlers.NewAutomationRunner(log, rules, inbox, handlers.AutomationRunnerConfig{}, zerolog.Nop())
	require.NoError(t, runner.Open(ctx))
	t.Cleanup(func() { runner.Close(ctx) })
	return &opFixture{t: t, url: jstest.URL(srv), log: log}
}

func TestOperatorAutomation(t *testing.T) {
	f := mustStartAutomationPlane(t)
	out := filepath.Join(t.TempDir(), "event.json")
	res := f.ok("automation", "add", "page-oncall", "--on", "failover_completed", "--vm", "web01",
		"--exec", "cat > "+out, "--timeout", "30s")
	require.Contains(t, res, "automation add: ok: automation_added")

	// Bad input: refused with the code, or bad usage; nothing appended.
	before := f.lastSeq()
	f.refused("invalid_argument", "automation", "add", "x", "--on", "failover_done", "--exec", "true")
	f.refused("invalid_argument", "automation", "add", "x", "--on", "failover_completed", "--exec", "")
	f.refused("invalid_argument", "automation", "add", "x", "--on", "failover_completed", "--exec", "true", "--timeout", "2h")
	f.refused("already_exists", "automation", "add", "page-oncall", "--on", "failover_completed", "--exec", "true")
	f.refused("not_found", "automation", "rm", "nosuch")
	code, _, _ := f.run("automation", "add", "x", "--on", "failover_completed")
	require.Equal(t, exitUsage, code, "--exec is required")
	require.Equal(t, before, f.lastSeq())

	ctx := context.Background()
	ev, err := f.log.Append(ctx, events.VMAgg("web01"), 0, events.Meta{CommandID: "c1"},
		events.FailoverCompletedData{Mode: "planned", Host: "hv02", Site: "secondary", Epoch: 2})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		var rules []projections.AutomationRule
		require.NoError(t, json.Unmarshal([]byte(f.ok("automation", "ls", "--json")), &rules))
		return len(rules) == 1 && rules[0].LastRun != nil
	}, 10*time.Second, 20*time.Millisecond)
	raw, err := os.ReadFile(out)
	require.NoError(t, err)
	_, data, err := events.Decode(raw)
	require.NoError(t, err)
	require.Equal(t, events.FailoverCompleted, data.EventType())

	table := f.ok("automation", "ls")
	require.Contains(t, table, "NAME")
	require.Contains(t, table, "page-oncall")
	require.Contains(t, table, "failover_completed")
	require.Contains(t, table, "30s")
	require.Contains(t, table, fmt.Sprintf("event %d: exit 0", ev.Last()))

	require.Contains(t, f.ok("automation", "rm", "page-oncall"), "automation_removed")
	require.Contains(t, f.ok("automation", "ls", "--after-seq", jsonNum(f.lastSeq())), "(none)")
}
