package handlers

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/projections"
)

func TestAutomationFailingCommandRecordsItsExitCode(t *testing.T) {
	f := mustStartAutomation(t)
	f.startRunner()
	f.addRule(map[string]any{"name": "fails", "on": events.FailoverCompleted, "exec": "echo to stdout; echo broken >&2; exit 3"})
	seq := f.failoverCompleted("web01")
	out := f.outcome("fails", seq)
	require.Equal(t, 3, out.ExitCode)
	require.Contains(t, out.Error, "exit status 3")
	require.Contains(t, out.Output, "to stdout")
	require.Contains(t, out.Output, "broken")

	// The read model must hold the outcome, appended after the event.
	last, err := f.log.LastSeq(context.Background())
	require.NoError(t, err)
	got := f.automations(last)
	require.Len(t, got, 1)
	require.NotNil(t, got[0].LastRun)
	require.Equal(t, seq, got[0].LastRun.EventSeq)
	require.Equal(t, 3, got[0].LastRun.ExitCode)
}

func TestAutomationTimeoutKillsTheProcessGroup(t *testing.T) {
	f := mustStartAutomation(t)
	f.startRunner()
	pidFile := filepath.Join(f.dir, "child.pid")
	f.addRule(map[string]any{"name": "slow", "on": events.FailoverCompleted, "timeout": "300ms",
		"exec": fmt.Sprintf("sleep 60 & echo $! > %s; wait", pidFile)})
	start := time.Now()
	seq := f.failoverCompleted("web01")
	out := f.outcome("slow", seq)
	require.Less(t, time.Since(start), 10*time.Second)
	require.Equal(t, -1, out.ExitCode)
	require.Contains(t, out.Error, "timed out after 300ms")
	raw, err := os.ReadFile(pidFile)
	require.NoError(t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return !processRunning(pid) }, 5*time.Second, 10*time.Millisecond,
		"the command's child (pid %d) is killed with its group", pid)
}

// processRunning reports whether pid exists and is not a zombie.
func processRunning(pid int) bool {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	fields := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

// automations answers sr.q.automations once the read model has seq.
func (f *autoFixture) automations(seq uint64) []projections.AutomationRule {
	f.t.Helper()
	body, err := json.Marshal(map[string]any{"after_seq": seq})
	require.NoError(f.t, err)
	msg, err := f.nc.Request(AutomationsQuerySubject, body, 10*time.Second)
	require.NoError(f.t, err)
	require.Empty(f.t, msg.Header.Get(micro.ErrorCodeHeader), string(msg.Data))
	var out []projections.AutomationRule
	require.NoError(f.t, json.Unmarshal(msg.Data, &out))
	return out
}
