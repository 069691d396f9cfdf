package handlers

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/jetstream"
	"github.com/siterecovery/siterecovery/events/jetstream/jstest"
	"github.com/siterecovery/siterecovery/events/subscribe"
	"github.com/siterecovery/siterecovery/projections"
)

// autoFixture is a control plane's automation part on an embedded
// JetStream server: the log, the automations read model, the service with
// the automation handlers, and runners started and stopped by the test.
type autoFixture struct {
	*fixture
	rules *projections.Automations
	dir   string // where the test's commands write
}

func mustStartAutomation(t *testing.T) *autoFixture {
	t.Helper()
	ctx := context.Background()
	srv := jstest.MustRunServer(t)
	nc := jstest.MustConnect(t, jstest.URL(srv))
	jl, err := jetstream.Open(ctx, nc, jetstream.Config{Logger: zerolog.Nop()})
	require.NoError(t, err)
	t.Cleanup(func() { jl.Close() })
	rules := projections.NewAutomations(jl, zerolog.Nop())
	require.NoError(t, rules.Open(ctx))
	t.Cleanup(func() { require.NoError(t, rules.Close()) })
	svc := New(jl, nil, zerolog.Nop())
	svc.Extend(NewAutomationHandlers(jl, rules, zerolog.Nop()))
	require.NoError(t, svc.Open(ctx, nc))
	t.Cleanup(func() { require.NoError(t, svc.Close(ctx)) })
	return &autoFixture{fixture: &fixture{t: t, url: jstest.URL(srv), nc: nc, log: jl, svc: svc}, rules: rules, dir: t.TempDir()}
}

// startRunner starts one more runner (a control plane starting) on the
// shared durable consumer; stop it with the returned function (a control
// plane stopping), else it stops when the test ends.
func (f *autoFixture) startRunner() (stop func()) {
	f.t.Helper()
	ctx := context.Background()
	inbox, err := subscribe.OpenDurable(ctx, f.nc, subscribe.DurableConfig{Name: AutomationConsumer, AckWait: 10 * time.Second})
	require.NoError(f.t, err)
	r := NewAutomationRunner(f.log, f.rules, inbox, AutomationRunnerConfig{Progress: time.Second}, zerolog.Nop())
	require.NoError(f.t, r.Open(ctx))
	stop = func() {
		require.NoError(f.t, r.Close(ctx))
		require.NoError(f.t, r.Close(ctx), "Close twice")
	}
	f.t.Cleanup(stop)
	return stop
}

// addRule adds a rule that must be accepted.
func (f *autoFixture) addRule(body map[string]any) Result {
	f.t.Helper()
	r := f.request(AutomationAddSubject, body)
	require.Empty(f.t, r.Code, r.Message)
	return r.Result
}

// recordingRule is a rule on typ whose command writes its stdin to
// <dir>/<name>-<seq>.json and appends its environment to <dir>/<name>.runs.
func (f *autoFixture) recordingRule(name string, typ events.Type, extra map[string]any) {
	f.t.Helper()
	body := map[string]any{"name": name, "on": typ,
		"exec": fmt.Sprintf(`cat > %s/%s-$SR_EVENT_SEQ.json && echo "$SR_EVENT_SEQ $SR_EVENT_TYPE $SR_VM $SR_RULE" >> %s/%s.runs`, f.dir, name, f.dir, name)}
	for k, v := range extra {
		body[k] = v
	}
	f.addRule(body)
}

// failoverCompleted appends a failover_completed of vm and returns its
// sequence.
func (f *autoFixture) failoverCompleted(vm string) uint64 {
	f.t.Helper()
	ctx := context.Background()
	recs, err := f.log.Load(ctx, events.VMAgg(vm))
	require.NoError(f.t, err)
	meta := events.Meta{CommandID: "test-" + strconv.Itoa(len(recs)) + "-" + vm, Actor: "test"}
	res, err := f.log.Append(ctx, events.VMAgg(vm), lastSeq(recs), meta,
		events.FailoverCompletedData{Mode: "planned", RecoveryPoint: "latest", Epoch: uint64(len(recs) + 1), Host: "hv02", Site: "secondary"})
	require.NoError(f.t, err)
	return res.Last()
}

// outcome waits for the rule's automation_executed of the event at seq.
func (f *autoFixture) outcome(rule string, seq uint64) events.AutomationExecutedData {
	f.t.Helper()
	var out events.AutomationExecutedData
	require.Eventually(f.t, func() bool {
		recs, err := f.log.Load(context.Background(), automationAgg(rule))
		require.NoError(f.t, err)
		var ok bool
		out, ok = executedFor(recs, seq)
		return ok
	}, 15*time.Second, 10*time.Millisecond, "outcome of %s on event %d", rule, seq)
	return out
}

// settled waits until the durable consumer has delivered and seen acked
// every event of the log: nothing more will run.
func (f *autoFixture) settled() {
	f.t.Helper()
	js, err := natsjs.New(f.nc)
	require.NoError(f.t, err)
	require.Eventually(f.t, func() bool {
		ctx := context.Background()
		last, err := f.log.LastSeq(ctx)
		require.NoError(f.t, err)
		c, err := js.Consumer(ctx, jetstream.DefaultStream, AutomationConsumer)
		require.NoError(f.t, err)
		info, err := c.Info(ctx)
		require.NoError(f.t, err)
		return info.NumPending == 0 && info.NumAckPending == 0 && info.AckFloor.Stream >= last
	}, 15*time.Second, 10*time.Millisecond, "automation consumer settled")
}

// runs returns the seqs the rule's command ran for, in order of runs.
func (f *autoFixture) runs(rule string) []uint64 {
	f.t.Helper()
	raw, err := os.ReadFile(filepath.Join(f.dir, rule+".runs"))
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(f.t, err)
	var seqs []uint64
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		seq, err := strconv.ParseUint(strings.Fields(line)[0], 10, 64)
		require.NoError(f.t, err)
		seqs = append(seqs, seq)
	}
	return seqs
}

func TestAutomationRunsOnceWithTheEventOnStdinAcrossRestarts(t *testing.T) {
	f := mustStartAutomation(t)
	stop := f.startRunner()
	f.recordingRule("notify", events.FailoverCompleted, nil)
	f.addRule(map[string]any{"name": "other-vm", "on": events.FailoverCompleted, "vm": "db01", "exec": "touch " + f.dir + "/other-vm"})

	s1 := f.failoverCompleted("web01")
	out := f.outcome("notify", s1)
	require.Equal(t, 0, out.ExitCode)
	require.Empty(t, out.Error)
	raw, err := os.ReadFile(filepath.Join(f.dir, fmt.Sprintf("notify-%d.json", s1)))
	require.NoError(t, err)
	meta, data, err := events.Decode(raw)
	require.NoError(t, err, "stdin is the event's envelope")
	require.Equal(t, events.FailoverCompleted, data.EventType())
	require.Equal(t, "secondary", data.(events.FailoverCompletedData).Site)
	require.Equal(t, "test", meta.Actor)
	env, err := os.ReadFile(filepath.Join(f.dir, "notify.runs"))
	require.NoError(t, err)
	require.Equal(t, fmt.Sprintf("%d failover_completed web01 notify\n", s1), string(env))
	f.settled()

	// The control plane stops; an event is appended while it is down; it
	// restarts: the new event runs once, the handled one not again.
	stop()
	s2 := f.failoverCompleted("web02")
	stop = f.startRunner()
	f.outcome("notify", s2)
	f.settled()
	require.Equal(t, []uint64{s1, s2}, f.runs("notify"))

	// A runner that recorded an outcome and stopped before acking: the
	// event comes again and is not run again.
	stop()
	s3 := f.failoverCompleted("web03")
	f.recordOutcome("notify", s3)
	stop = f.startRunner()
	s4 := f.failoverCompleted("web01")
	f.outcome("notify", s4)
	f.settled()
	require.Equal(t, []uint64{s1, s2, s4}, f.runs("notify"))
	require.NoFileExists(t, filepath.Join(f.dir, fmt.Sprintf("notify-%d.json", s3)))

	// Two control planes share the events: each runs once.
	f.startRunner()
	want := []uint64{s1, s2, s4}
	for i := range 6 {
		want = append(want, f.failoverCompleted(fmt.Sprintf("vm%d", i)))
	}
	for _, seq := range want[3:] {
		f.outcome("notify", seq)
	}
	f.settled()
	require.ElementsMatch(t, want, f.runs("notify"))
	require.NoFileExists(t, filepath.Join(f.dir, "other-vm"), "a rule on another VM does not run")
	stop()
}

// recordOutcome appends the rule's outcome of the event at seq as a runner
// would, without running anything.
func (f *autoFixture) recordOutcome(rule string, seq uint64) {
	f.t.Helper()
	ctx := context.Background()
	recs, err := f.log.Load(ctx, automationAgg(rule))
	require.NoError(f.t, err)
	id := automationCommandID(seq)
	_, err = f.log.Append(ctx, automationAgg(rule), lastSeq(recs), events.Meta{CommandID: id, Actor: automationActor},
		events.AutomationExecutedData{Name: rule, EventSeq: seq})
	require.NoError(f.t, err)
}

// A control plane that stops while a command runs kills it and records
// nothing; the event is delivered again and the command runs again (at
// least once), then its outcome is recorded once.
func TestAutomationStoppedMidRunRunsAgainAfterRestart(t *testing.T) {
	f := mustStartAutomation(t)
	stop := f.startRunner()
	starts := filepath.Join(f.dir, "starts")
	f.addRule(map[string]any{"name": "slow-once", "on": events.FailoverCompleted, "timeout": "10m",
		"exec": fmt.Sprintf(`echo start >> %s; [ "$(wc -l < %s)" -ge 2 ] || sleep 600`, starts, starts)})
	seq := f.failoverCompleted("web01")
	require.Eventually(t, func() bool { _, err := os.Stat(starts); return err == nil }, 10*time.Second, 10*time.Millisecond)
	stopped := time.Now()
	stop()
	require.Less(t, time.Since(stopped), 5*time.Second, "Close kills the running command")
	recs, err := f.log.Load(context.Background(), automationAgg("slow-once"))
	require.NoError(t, err)
	_, done := executedFor(recs, seq)
	require.False(t, done, "a killed run records nothing")

	f.startRunner()
	out := f.outcome("slow-once", seq)
	require.Equal(t, 0, out.ExitCode)
	f.settled()
	raw, err := os.ReadFile(starts)
	require.NoError(t, err)
	require.Equal(t, "start\nstart\n", string(raw))
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
