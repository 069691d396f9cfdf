package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/jetstream"
	"github.com/siterecovery/siterecovery/events/jetstream/jstest"
	"github.com/siterecovery/siterecovery/handlers"
	"github.com/siterecovery/siterecovery/projections"
)

// opFixture is a control plane for CLI tests: an embedded JetStream server,
// the event log on it, the projections and the handlers service.
type opFixture struct {
	t   *testing.T
	url string
	log *jetstream.Log
}

func mustStartControlPlane(t *testing.T) *opFixture {
	t.Helper()
	ctx := context.Background()
	srv := jstest.MustRunServer(t)
	nc := jstest.MustConnect(t, jstest.URL(srv))
	log, err := jetstream.Open(ctx, nc, jetstream.Config{Logger: zerolog.Nop()})
	require.NoError(t, err)
	t.Cleanup(func() { log.Close() })
	store, err := projections.Open(ctx, filepath.Join(t.TempDir(), "projections.db"), log, zerolog.Nop())
	require.NoError(t, err)
	t.Cleanup(func() { store.Close() })
	svc := handlers.New(log, store, zerolog.Nop())
	require.NoError(t, svc.Open(ctx, nc))
	t.Cleanup(func() { svc.Close(ctx) })
	return &opFixture{t: t, url: jstest.URL(srv), log: log}
}

// run runs an operator command against the fixture.
func (f *opFixture) run(args ...string) (int, string, string) {
	f.t.Helper()
	var stdout, stderr bytes.Buffer
	code := runOperator(append(args, "--nats", f.url), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// ok runs a command that must succeed and returns its stdout.
func (f *opFixture) ok(args ...string) string {
	f.t.Helper()
	code, out, errOut := f.run(args...)
	require.Equal(f.t, exitOK, code, "%v: %s", args, errOut)
	return out
}

// refused runs a command that must be refused with code.
func (f *opFixture) refused(code string, args ...string) string {
	f.t.Helper()
	status, _, errOut := f.run(args...)
	require.Equal(f.t, exitRefused, status, "%v", args)
	require.True(f.t, strings.HasPrefix(errOut, "error: "+code+": "), "%v: %s", args, errOut)
	return errOut
}

func (f *opFixture) lastSeq() uint64 {
	seq, err := f.log.LastSeq(context.Background())
	require.NoError(f.t, err)
	return seq
}

func (f *opFixture) buildFabric() {
	f.ok("site", "register", "primary")
	f.ok("site", "register", "secondary")
	f.ok("host", "register", "hv01", "--site", "primary")
	f.ok("host", "register", "hv02", "--site", "primary")
	f.ok("host", "register", "hv11", "--site", "secondary")
	f.ok("cloud", "create", "gold", "--site", "primary", "--hosts", "hv01")
	f.ok("cloud", "add-host", "gold", "hv02")
	f.ok("cloud", "create", "gold-dr", "--site", "secondary", "--hosts", "hv11")
	f.ok("policy", "create", "p30", "--copy-frequency", "30s", "--retention", "24h", "--app-consistent-every", "4h", "--compression")
	f.ok("pairing", "create", "--source", "gold", "--target", "gold-dr", "--policy", "p30")
	f.ok("netmap", "create", "lan", "--source-network", "lan-a", "--target-network", "lan-b")
	f.ok("vm", "create", "web01", "--host", "hv01", "--disk", "4GiB", "--disk", "1GiB", "--network", "lan-a")
	f.ok("vm", "create", "db01", "--host", "hv02", "--disk", "8GiB")
}

func TestOperatorFabricAndRefusals(t *testing.T) {
	f := mustStartControlPlane(t)
	f.buildFabric()

	status, _, errOut := f.run("vm", "planned-failover", "web01")
	require.Equal(t, exitRefused, status)
	require.Equal(t, "error: invalid_state: vm web01 is Unprotected: planned_failover is not allowed (allowed: enable)\n", errOut)

	out := f.ok("vm", "enable", "web01", "--json", "--command-id", "en-1")
	var res handlers.Result
	require.NoError(t, json.Unmarshal([]byte(out), &res))
	require.Equal(t, []events.Type{events.ProtectionEnableStarted}, res.Events)
	require.False(t, res.Duplicate)
	seq := f.lastSeq()
	again := f.ok("vm", "enable", "web01", "--command-id", "en-1")
	require.Contains(t, again, "duplicate")
	require.Equal(t, seq, f.lastSeq(), "a retried command id appends once")

	out = f.ok("vm", "show", "web01", "--json", "--after-seq", "0")
	require.Contains(t, out, `"name": "web01"`)
	var vm struct {
		ProtectionState string   `json:"protection_state"`
		Allowed         []string `json:"allowed_operations"`
		RecoveryHost    string   `json:"recovery_host"`
	}
	out = f.ok("vm", "show", "web01", "--json", "--after-seq", jsonNum(res.Seq))
	require.NoError(t, json.Unmarshal([]byte(out), &vm))
	require.Equal(t, "EnablingProtection", vm.ProtectionState)
	require.Equal(t, []string{"disable"}, vm.Allowed)
	require.Equal(t, "hv11", vm.RecoveryHost)
	table := f.ok("vm", "show", "web01", "--after-seq", jsonNum(res.Seq))
	require.Contains(t, table, "protection_state:")
	require.Contains(t, table, "EnablingProtection")

	before := f.lastSeq()
	f.refused("invalid_argument", "policy", "create", "fast", "--copy-frequency", "500ms")
	f.refused("invalid_argument", "policy", "create", "fast", "--copy-frequency", "soon")
	f.refused("invalid_argument", "policy", "create", "long", "--retention", "721h")
	f.refused("not_found", "host", "register", "hv09", "--site", "nowhere")
	f.refused("not_found", "vm", "enable", "ghost")
	f.refused("already_exists", "site", "register", "primary")
	f.refused("invalid_argument", "site", "register", "bad.name")
	f.refused("invalid_state", "cloud", "create", "silver", "--site", "primary", "--hosts", "hv01")
	msg := f.refused("invalid_state", "pairing", "create", "--source", "gold", "--target", "gold-dr", "--policy", "p30", "--name", "again")
	require.Contains(t, msg, "already in pairing")
	f.refused("invalid_state", "policy", "delete", "p30")
	require.Equal(t, before, f.lastSeq(), "refused commands append nothing")
}

func jsonNum(n uint64) string {
	raw, _ := json.Marshal(n)
	return string(raw)
}

func TestOperatorBadUsage(t *testing.T) {
	for _, args := range [][]string{
		{"vm"}, {"vm", "fly", "web01"}, {"nonsense"}, {"vm", "enable"}, {"vm", "enable", "a", "b"},
		{"vm", "enable", "web01", "--bogus"}, {"host", "register", "hv01"}, {"plan", "create", "shop"},
		{"plan", "create", "shop", "--group", "a", "--pre-script", "2:true"}, {"events", "--count", "3"},
		{"vm", "change-recovery-point", "web01"},
	} {
		var stdout, stderr bytes.Buffer
		require.Equal(t, exitUsage, runOperator(args, &stdout, &stderr), "%v", args)
		require.Contains(t, stderr.String(), "siterecovery", "%v", args)
	}
	var stdout, stderr bytes.Buffer
	require.Equal(t, exitRefused, runOperator([]string{"sites", "--nats", "nats://127.0.0.1:1", "--timeout", "200ms"}, &stdout, &stderr))
	require.Contains(t, stderr.String(), "error: unavailable")
}

func TestOperatorStatusListsAndPlans(t *testing.T) {
	f := mustStartControlPlane(t)
	f.buildFabric()
	f.ok("vm", "enable", "web01")
	out := f.ok("plan", "create", "shop", "--group", "web01", "--group", "db01",
		"--pre-script", "1:echo pre", "--manual-action-after", "1:check DNS", "--json")
	var res handlers.Result
	require.NoError(t, json.Unmarshal([]byte(out), &res))
	seq := jsonNum(res.Seq)

	plan := f.ok("plan", "show", "shop", "--after-seq", seq)
	require.Contains(t, plan, "check DNS")
	require.Contains(t, f.ok("plan", "ls", "--after-seq", seq), "shop")
	require.Contains(t, f.ok("sites", "--after-seq", seq), "secondary")
	hosts := f.ok("hosts", "--after-seq", seq)
	require.Contains(t, hosts, "hv11")
	require.Contains(t, hosts, "SITE")
	require.Contains(t, f.ok("cloud", "ls", "--after-seq", seq), "gold-dr")
	require.Contains(t, f.ok("policy", "ls", "--after-seq", seq), "p30")
	require.Contains(t, f.ok("pairing", "ls", "--after-seq", seq), "gold-gold-dr")
	require.Contains(t, f.ok("netmap", "ls", "--after-seq", seq), "lan-b")
	vms := f.ok("vm", "ls", "--after-seq", seq)
	require.Contains(t, vms, "EnablingProtection")
	require.Contains(t, vms, "Unprotected")

	status := f.ok("status", "--after-seq", seq)
	require.Contains(t, status, "sites: 2")
	require.Contains(t, status, "EnablingProtection 1")
	require.Contains(t, status, "Unprotected 1")
	require.Contains(t, status, "Normal 2")
	require.Contains(t, status, "web01")

	jobs := f.ok("jobs", "--after-seq", seq)
	require.Contains(t, jobs, "EnableProtection")
	out = f.ok("jobs", "--json", "--after-seq", seq)
	var js []struct{ ID string }
	require.NoError(t, json.Unmarshal([]byte(out), &js))
	require.NotEmpty(t, js)
	require.Contains(t, f.ok("job", "show", js[0].ID, "--after-seq", seq), "web01")
	hist := f.ok("events", "--kind", "vm", "--id", "web01", "--after-seq", seq)
	require.Contains(t, hist, "protection_enable_started")

	f.ok("plan", "planned-failover", "shop")
	f.refused("invalid_state", "plan", "delete", "shop")
	f.ok("plan", "cancel", "shop")
	f.ok("plan", "delete", "shop")
}

func TestOperatorEventsFollow(t *testing.T) {
	f := mustStartControlPlane(t)
	var wg sync.WaitGroup
	var out string
	var code int
	started := make(chan struct{})
	wg.Go(func() {
		close(started)
		code, out, _ = f.run("events", "--follow", "--count", "2", "--kind", "site")
	})
	<-started
	// The subscription starts asynchronously: register until it sees two.
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		f.ok("site", "register", "s"+jsonNum(uint64(i)))
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
			require.Equal(t, exitOK, code)
			require.Equal(t, 2, strings.Count(out, "site_registered"), out)
			return
		case <-time.After(100 * time.Millisecond):
		}
		require.True(t, time.Now().Before(deadline), "follow printed nothing")
	}
}
