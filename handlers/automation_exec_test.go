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

func TestAutomationRemoveStopsTheRule(t *testing.T) {
	f := mustStartAutomation(t)
	f.startRunner()
	f.recordingRule("gone", events.FailoverCompleted, nil)
	f.recordingRule("stays", events.FailoverCompleted, map[string]any{"vm": "web01"})
	s1 := f.failoverCompleted("web01")
	f.outcome("gone", s1)
	f.outcome("stays", s1)

	res := f.ok(AutomationRemoveSubject, map[string]any{"name": "gone"})
	require.Equal(t, []events.Type{events.AutomationRemoved}, res.Events)
	s2 := f.failoverCompleted("web01")
	f.failoverCompleted("web02") // neither rule runs: one removed, one on web01
	f.outcome("stays", s2)
	f.settled()
	require.Equal(t, []uint64{s1}, f.runs("gone"))
	require.Equal(t, []uint64{s1, s2}, f.runs("stays"), "a rule with --vm runs for that VM only")

	got := f.automations(res.Seq)
	require.Len(t, got, 1)
	require.Equal(t, "stays", got[0].Name)
	require.Equal(t, "web01", got[0].VM)
	require.Equal(t, DefaultAutomationTimeout, got[0].Timeout.D())

	r := f.request(AutomationRemoveSubject, map[string]any{"name": "gone"})
	require.Equal(t, CodeNotFound, r.Code)
	// The name may be used again; the new rule runs for later events only.
	f.recordingRule("gone", events.FailoverCompleted, nil)
	s4 := f.failoverCompleted("web03")
	f.outcome("gone", s4)
	f.settled()
	require.Equal(t, []uint64{s1, s4}, f.runs("gone"))
}

func TestAutomationBadInputAppendsNothing(t *testing.T) {
	f := mustStartAutomation(t)
	f.addRule(map[string]any{"name": "taken", "on": events.FailoverCompleted, "exec": "true"})
	before, err := f.log.LastSeq(context.Background())
	require.NoError(t, err)
	ok := map[string]any{"name": "r1", "on": events.FailoverCompleted, "exec": "true"}
	with := func(k string, v any) map[string]any {
		m := map[string]any{}
		for kk, vv := range ok {
			m[kk] = vv
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	cases := []struct {
		name string
		body any
		code string
	}{
		{"unknown event type", with("on", "failover_finished"), CodeInvalidArgument},
		{"no event type", with("on", nil), CodeInvalidArgument},
		{"automation event", with("on", events.AutomationExecuted), CodeInvalidArgument},
		{"empty exec", with("exec", "  "), CodeInvalidArgument},
		{"no exec", with("exec", nil), CodeInvalidArgument},
		{"zero timeout", with("timeout", "0s"), CodeInvalidArgument},
		{"negative timeout", with("timeout", "-1s"), CodeInvalidArgument},
		{"timeout over 1h", with("timeout", "61m"), CodeInvalidArgument},
		{"timeout not a duration", with("timeout", "soon"), CodeInvalidArgument},
		{"bad name", with("name", "a.b"), CodeInvalidArgument},
		{"no name", with("name", nil), CodeInvalidArgument},
		{"bad vm", with("vm", "web 01"), CodeInvalidArgument},
		{"unknown field", with("when", "now"), CodeInvalidArgument},
		{"existing rule", with("name", "taken"), CodeAlreadyExists},
	}
	for _, c := range cases {
		r := f.request(AutomationAddSubject, c.body)
		require.Equal(t, c.code, r.Code, "%s: %s", c.name, r.Message)
	}
	r := f.request(AutomationRemoveSubject, map[string]any{"name": "nosuch"})
	require.Equal(t, CodeNotFound, r.Code)
	r = f.request(AutomationRemoveSubject, map[string]any{"name": ""})
	require.Equal(t, CodeInvalidArgument, r.Code)
	after, err := f.log.LastSeq(context.Background())
	require.NoError(t, err)
	require.Equal(t, before, after, "refused commands append nothing")

	// The largest timeout is accepted; a retried command appends once.
	res := f.ok(AutomationAddSubject, with("timeout", "1h"))
	again := f.ok(AutomationAddSubject, map[string]any{"name": "r2", "on": events.VMCreated, "exec": "true", "command_id": "c-1"})
	dup := f.ok(AutomationAddSubject, map[string]any{"name": "r2", "on": events.VMCreated, "exec": "true", "command_id": "c-1"})
	require.True(t, dup.Duplicate)
	require.Equal(t, again.Seq, dup.Seq)
	got := f.automations(again.Seq)
	require.Len(t, got, 3)
	require.Equal(t, "r1", got[0].Name)
	require.Equal(t, time.Hour, got[0].Timeout.D())
	require.Equal(t, res.Seq, got[0].AddedSeq)
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
