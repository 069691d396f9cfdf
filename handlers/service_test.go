package handlers

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/jetstream"
	"github.com/siterecovery/siterecovery/events/jetstream/jstest"
)

// logReadModel is a trivial ReadModel folded from the log on each query:
// enough to test the query path of the service.
type logReadModel struct{ log events.Log }

func (m logReadModel) WaitFor(ctx context.Context, seq uint64) error {
	cur, err := m.log.Follow(ctx, seq)
	if err != nil {
		return err
	}
	defer cur.Close()
	_, err = cur.Next(ctx, 1)
	return err
}

func (m logReadModel) Query(ctx context.Context, name string, params json.RawMessage) (any, error) {
	var p struct {
		VM string `json:"vm"`
	}
	if err := json.Unmarshal(params, &p); err != nil || name != "vm" {
		return nil, fmt.Errorf("query %s: %w", name, events.ErrInvalidArgument)
	}
	recs, err := m.log.Load(ctx, events.VMAgg(p.VM))
	if err != nil {
		return nil, err
	}
	vm := events.FoldVM(recs)
	if !vm.Exists() {
		return nil, fmt.Errorf("vm %s: %w", p.VM, events.ErrNotFound)
	}
	return map[string]any{"name": vm.Name, "protection_state": vm.State, "allowed_operations": vm.Allowed(), "version": vm.Version}, nil
}

type fixture struct {
	t   testing.TB
	url string
	nc  *nats.Conn
	log events.Log
	svc *Service
}

// moreInstances runs n more services on the same log, each on its own
// connection, as several serve processes would: requests spread over them.
func (f *fixture) moreInstances(n int) {
	f.t.Helper()
	for range n {
		svc := New(f.log, logReadModel{f.log}, zerolog.Nop())
		require.NoError(f.t, svc.Open(context.Background(), jstest.MustConnect(f.t, f.url)))
		f.t.Cleanup(func() { require.NoError(f.t, svc.Close(context.Background())) })
	}
}

// mustStart runs an embedded JetStream server, the event log (JetStream, or
// MemLog when mem) and the service on it.
func mustStart(tb testing.TB, mem bool) *fixture {
	tb.Helper()
	srv := jstest.MustRunServer(tb)
	nc := jstest.MustConnect(tb, jstest.URL(srv))
	var log events.Log = events.NewMemLog()
	if !mem {
		jl, err := jetstream.Open(context.Background(), nc, jetstream.Config{Logger: zerolog.Nop()})
		require.NoError(tb, err)
		tb.Cleanup(func() { jl.Close() })
		log = jl
	}
	svc := New(log, logReadModel{log}, zerolog.Nop())
	require.NoError(tb, svc.Open(context.Background(), nc))
	tb.Cleanup(func() {
		require.NoError(tb, svc.Close(context.Background()))
		require.NoError(tb, svc.Close(context.Background()), "Close twice")
	})
	return &fixture{t: tb, url: jstest.URL(srv), nc: nc, log: log, svc: svc}
}

// reply is a decoded reply: the result, or the error code and message.
type reply struct {
	Result
	Code    string
	Message string
	Raw     []byte
}

func (f *fixture) request(subject string, body any) reply {
	f.t.Helper()
	raw, ok := body.([]byte)
	if !ok {
		var err error
		raw, err = json.Marshal(body)
		require.NoError(f.t, err)
	}
	msg, err := f.nc.Request(subject, raw, 10*time.Second)
	require.NoError(f.t, err, subject)
	r := reply{Raw: msg.Data}
	if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
		var eb errorBody
		require.NoError(f.t, json.Unmarshal(msg.Data, &eb))
		require.Equal(f.t, code, eb.Error.Code)
		require.Equal(f.t, msg.Header.Get(micro.ErrorHeader), eb.Error.Message)
		r.Code, r.Message = code, eb.Error.Message
		return r
	}
	require.NoError(f.t, json.Unmarshal(msg.Data, &r.Result), string(msg.Data))
	return r
}

// ok sends a command that must succeed.
func (f *fixture) ok(subject string, body any) Result {
	f.t.Helper()
	r := f.request(subject, body)
	require.Empty(f.t, r.Code, "%s: %s", subject, r.Message)
	return r.Result
}

func (f *fixture) lastSeq() uint64 {
	f.t.Helper()
	seq, err := f.log.LastSeq(context.Background())
	require.NoError(f.t, err)
	return seq
}

type m = map[string]any

// buildFabric registers two sites with a host each (and a second primary
// host), clouds gold and gold-dr, policy p30, their pairing and VM web01.
func (f *fixture) buildFabric() {
	f.t.Helper()
	f.ok("sr.cmd.site.register", m{"name": "primary"})
	f.ok("sr.cmd.site.register", m{"name": "secondary"})
	f.ok("sr.cmd.host.register", m{"name": "hv01", "site": "primary"})
	f.ok("sr.cmd.host.register", m{"name": "hv02", "site": "primary"})
	f.ok("sr.cmd.host.register", m{"name": "hv11", "site": "secondary"})
	f.ok("sr.cmd.cloud.create", m{"name": "gold", "site": "primary", "hosts": []string{"hv01"}})
	f.ok("sr.cmd.cloud.add_host", m{"cloud": "gold", "host": "hv02"})
	f.ok("sr.cmd.cloud.create", m{"name": "gold-dr", "site": "secondary", "hosts": []string{"hv11"}})
	f.ok("sr.cmd.policy.create", m{"name": "p30", "copy_frequency": "30s", "retention": "24h", "app_consistent_every": "4h", "compression": true})
	f.ok("sr.cmd.netmap.create", m{"name": "lan", "source_network": "lan-a", "target_network": "lan-b"})
	f.ok("sr.cmd.vm.create", m{"name": "web01", "host": "hv01", "disk": []string{"4GiB"}, "networks": []string{"lan-a"}})
	r := f.ok("sr.cmd.pairing.create", m{"source": "gold", "target": "gold-dr", "policy": "p30"})
	require.Equal(f.t, []events.Type{events.CloudPaired, events.CloudPaired, events.PairingCreated}, r.Events)
}

func TestServiceFabricAndEnable(t *testing.T) {
	f := mustStart(t, false)
	f.buildFabric()

	r := f.request("sr.cmd.vm.planned_failover", m{"vm": "web01"})
	require.Equal(t, CodeInvalidState, r.Code)
	require.Equal(t, "vm web01 is Unprotected: planned_failover is not allowed (allowed: enable)", r.Message)

	res := f.ok("sr.cmd.vm.enable", m{"vm": "web01", "command_id": "enable-web01"})
	require.Equal(t, []events.Type{events.ProtectionEnableStarted}, res.Events)
	require.Equal(t, "enable-web01", res.Job)
	require.Equal(t, f.lastSeq(), res.Seq)

	recs, err := f.log.Load(context.Background(), events.VMAgg("web01"))
	require.NoError(t, err)
	en := recs[len(recs)-1].Data.(events.ProtectionEnableStartedData)
	require.Equal(t, events.ProtectionEnableStartedData{
		Pairing: "gold-gold-dr", Policy: "p30", Settings: en.Settings, SourceHost: "hv01", SourceSite: "primary",
		RecoveryHost: "hv11", TargetSite: "secondary", TargetCloud: "gold-dr",
	}, en)
	require.Equal(t, 30*time.Second, en.Settings.CopyFrequency.D())

	// Read-your-writes through the read model.
	q := f.request("sr.q.vm", m{"vm": "web01", "after_seq": res.Seq})
	require.Empty(t, q.Code, q.Message)
	var vm struct {
		ProtectionState string   `json:"protection_state"`
		Allowed         []string `json:"allowed_operations"`
	}
	require.NoError(t, json.Unmarshal(q.Raw, &vm))
	require.Equal(t, "EnablingProtection", vm.ProtectionState)
	require.Equal(t, []string{"disable"}, vm.Allowed)

	// Deletes refused while in use.
	r = f.request("sr.cmd.policy.delete", m{"name": "p30"})
	require.Equal(t, CodeInvalidState, r.Code, r.Message)
	r = f.request("sr.cmd.pairing.delete", m{"name": "gold-gold-dr"})
	require.Equal(t, CodeInvalidState, r.Code, r.Message)
	require.Contains(t, r.Message, "web01")
	r = f.request("sr.cmd.site.unregister", m{"name": "primary"})
	require.Equal(t, CodeInvalidState, r.Code, r.Message)
}

func TestServiceRefusesBadInputAndAppendsNothing(t *testing.T) {
	f := mustStart(t, false)
	f.buildFabric()
	before := f.lastSeq()
	cases := []struct {
		subject string
		body    any
		code    string
	}{
		{"sr.cmd.site.register", []byte(`{"name":`), CodeInvalidArgument},
		{"sr.cmd.site.register", []byte(`[1,2]`), CodeInvalidArgument},
		{"sr.cmd.site.register", m{"name": "a.b"}, CodeInvalidArgument},
		{"sr.cmd.site.register", m{"name": "x", "colour": "red"}, CodeInvalidArgument},
		{"sr.cmd.site.register", m{"name": "primary"}, CodeAlreadyExists},
		{"sr.cmd.site.register", m{"name": "x", "command_id": "has space"}, CodeInvalidArgument},
		{"sr.cmd.host.register", m{"name": "hv09", "site": "nowhere"}, CodeNotFound},
		{"sr.cmd.cloud.create", m{"name": "silver", "site": "primary", "hosts": []string{"hv11"}}, CodeInvalidArgument},
		{"sr.cmd.cloud.create", m{"name": "silver", "site": "primary", "hosts": []string{"hv01"}}, CodeInvalidState},
		{"sr.cmd.cloud.create", m{"name": "silver", "site": "primary", "hosts": []string{"hv99"}}, CodeNotFound},
		{"sr.cmd.policy.create", m{"name": "fast", "copy_frequency": "500ms"}, CodeInvalidArgument},
		{"sr.cmd.policy.create", m{"name": "fast", "copy_frequency": "soon"}, CodeInvalidArgument},
		{"sr.cmd.policy.create", m{"name": "long", "retention": "1000h"}, CodeInvalidArgument},
		{"sr.cmd.policy.create", m{"name": "ac", "retention": "2h", "app_consistent_every": "4h"}, CodeInvalidArgument},
		{"sr.cmd.policy.update", m{"name": "nope", "compression": true}, CodeNotFound},
		{"sr.cmd.pairing.create", m{"source": "gold", "target": "gold-dr", "policy": "p30", "name": "again"}, CodeInvalidState},
		{"sr.cmd.pairing.create", m{"source": "nope", "target": "gold-dr", "policy": "p30"}, CodeNotFound},
		{"sr.cmd.vm.create", m{"name": "web09", "host": "hv01", "disk": []string{"4 parsecs"}}, CodeInvalidArgument},
		{"sr.cmd.vm.create", m{"name": "web09", "host": "hv77", "disk": []string{"1GiB"}}, CodeNotFound},
		{"sr.cmd.vm.create", m{"name": "web01", "host": "hv01", "disk": []string{"1GiB"}}, CodeAlreadyExists},
		{"sr.cmd.vm.enable", m{"vm": "ghost"}, CodeNotFound},
		{"sr.cmd.vm.enable", m{"vm": "web01", "recovery_point": "rp1"}, CodeInvalidArgument},
		{"sr.cmd.vm.unplanned_failover", m{"vm": "web01", "recovery_point": "rp1"}, CodeInvalidState},
		{"sr.cmd.plan.create", m{"name": "shop", "groups": []m{{"vms": []string{"web01", "ghost"}}}}, CodeNotFound},
		{"sr.cmd.plan.create", m{"name": "shop", "groups": []m{}}, CodeInvalidArgument},
		{"sr.cmd.plan.planned_failover", m{"plan": "nope"}, CodeNotFound},
		{"sr.cmd.netmap.delete", m{"name": "nope"}, CodeNotFound},
	}
	for _, c := range cases {
		r := f.request(c.subject, c.body)
		require.Equal(t, c.code, r.Code, "%s %v: %s", c.subject, c.body, r.Message)
	}
	require.Equal(t, before, f.lastSeq(), "refused commands append nothing")
}

func TestServiceRetriedCommandAppendsOnce(t *testing.T) {
	for _, mem := range []bool{false, true} {
		t.Run(fmt.Sprintf("memlog=%v", mem), func(t *testing.T) {
			f := mustStart(t, mem)
			f.buildFabric()
			first := f.ok("sr.cmd.vm.enable", m{"vm": "web01", "command_id": "c-1"})
			seq := f.lastSeq()
			again := f.ok("sr.cmd.vm.enable", m{"vm": "web01", "command_id": "c-1"})
			require.True(t, again.Duplicate)
			require.False(t, first.Duplicate)
			require.Equal(t, first.Seq, again.Seq)
			require.Equal(t, first.Events, again.Events)
			require.Equal(t, seq, f.lastSeq())

			p1 := f.ok("sr.cmd.plan.create", m{"name": "shop", "groups": []m{{"vms": []string{"web01"}}}, "command_id": "p-1"})
			p2 := f.ok("sr.cmd.plan.create", m{"name": "shop", "groups": []m{{"vms": []string{"web01"}}}, "command_id": "p-1"})
			require.True(t, p2.Duplicate)
			require.Equal(t, p1.Seq, p2.Seq)
		})
	}
}

func TestServiceConcurrentEnableAppendsOne(t *testing.T) {
	for _, mem := range []bool{false, true} {
		t.Run(fmt.Sprintf("memlog=%v", mem), func(t *testing.T) {
			f := mustStart(t, mem)
			f.buildFabric()
			f.moreInstances(3)
			codes := make([]string, 20)
			var wg sync.WaitGroup
			for i := range codes {
				wg.Go(func() { codes[i] = f.request("sr.cmd.vm.enable", m{"vm": "web01"}).Code })
			}
			wg.Wait()
			okN, stateN := 0, 0
			for _, c := range codes {
				switch c {
				case "":
					okN++
				case CodeInvalidState:
					stateN++
				}
			}
			require.Equal(t, 1, okN, "codes: %v", codes)
			require.Equal(t, 19, stateN, "codes: %v", codes)
			recs, err := f.log.Load(context.Background(), events.VMAgg("web01"))
			require.NoError(t, err)
			n := 0
			for _, r := range recs {
				if r.Type() == events.ProtectionEnableStarted {
					n++
				}
			}
			require.Equal(t, 1, n)
		})
	}
}

// TestServiceCloudInOnePairing races pairings of one source cloud with
// three targets: exactly one wins, and the losers' claims are given back.
func TestServiceCloudInOnePairing(t *testing.T) {
	f := mustStart(t, false)
	f.buildFabric()
	f.ok("sr.cmd.pairing.delete", m{"name": "gold-gold-dr"})
	f.moreInstances(3)
	targets := []string{"dr1", "dr2", "dr3"}
	for i, c := range targets {
		h := fmt.Sprintf("hv2%d", i)
		f.ok("sr.cmd.host.register", m{"name": h, "site": "secondary"})
		f.ok("sr.cmd.cloud.create", m{"name": c, "site": "secondary", "hosts": []string{h}})
	}
	codes := make([]string, len(targets))
	var wg sync.WaitGroup
	for i, c := range targets {
		wg.Go(func() {
			codes[i] = f.request("sr.cmd.pairing.create", m{"source": "gold", "target": c, "policy": "p30"}).Code
		})
	}
	wg.Wait()
	winner := -1
	for i, c := range codes {
		if c == "" {
			require.Equal(t, -1, winner, "two pairings won: %v", codes)
			winner = i
		} else {
			require.Contains(t, []string{CodeInvalidState, CodeConflict}, c)
		}
	}
	require.NotEqual(t, -1, winner, "codes: %v", codes)
	// Every losing target is free again: it pairs with gold-dr's site peer.
	f.ok("sr.cmd.cloud.create", m{"name": "silver", "site": "primary"})
	for i, c := range targets {
		if i == winner {
			continue
		}
		f.ok("sr.cmd.pairing.create", m{"source": "silver", "target": c, "policy": "p30", "name": "silver-" + c})
		f.ok("sr.cmd.pairing.delete", m{"name": "silver-" + c})
	}
	// The first pairing's clouds were given back at delete: gold-dr pairs.
	f.ok("sr.cmd.pairing.create", m{"source": "silver", "target": "gold-dr", "policy": "p30"})
}

func TestServiceFailoverFlowAndPlans(t *testing.T) {
	f := mustStart(t, true)
	f.buildFabric()
	f.ok("sr.cmd.vm.enable", m{"vm": "web01"})
	// The agents' reports are not commands yet: append them as an agent would.
	ctx := context.Background()
	agg := events.VMAgg("web01")
	meta := events.Meta{CommandID: "agent-1"}
	_, err := f.log.Append(ctx, agg, f.vmVersion(), meta, events.InitialReplicationStartedData{},
		events.InitialReplicationCompletedData{}, events.RecoveryPointCreatedData{ID: "rp1", Time: time.Now(), Epoch: 1})
	require.NoError(t, err)

	r := f.ok("sr.cmd.vm.test_failover", m{"vm": "web01", "network": "test-net"})
	require.Equal(t, []events.Type{events.TestFailoverStarted}, r.Events)
	f.ok("sr.cmd.vm.unplanned_failover", m{"vm": "web01", "recovery_point": "latest", "shutdown_source": true})
	r2 := f.request("sr.cmd.vm.commit", m{"vm": "web01"})
	require.Equal(t, CodeInvalidState, r2.Code)
	require.Contains(t, r2.Message, "UnplannedFailoverInProgress")

	f.ok("sr.cmd.plan.create", m{"name": "shop", "groups": []m{{"vms": []string{"web01"}, "pre_script": "true", "manual_action": "check DNS"}}})
	p := f.ok("sr.cmd.plan.planned_failover", m{"plan": "shop", "command_id": "job-7"})
	require.Equal(t, "job-7", p.Job)
	r2 = f.request("sr.cmd.plan.delete", m{"plan": "shop"})
	require.Equal(t, CodeInvalidState, r2.Code)
	f.ok("sr.cmd.plan.cancel", m{"plan": "shop"})
	f.ok("sr.cmd.plan.delete", m{"name": "shop"})
}

func (f *fixture) vmVersion() uint64 {
	recs, err := f.log.Load(context.Background(), events.VMAgg("web01"))
	require.NoError(f.t, err)
	return lastSeq(recs)
}

var _ Extension = (*AgentHandlers)(nil)

func TestServiceDiscoverable(t *testing.T) {
	srv := jstest.MustRunServer(t)
	nc := jstest.MustConnect(t, jstest.URL(srv))
	log := events.NewMemLog()
	svc := New(log, logReadModel{log}, zerolog.Nop())
	svc.Extend(NewAgentHandlers(log, 0, zerolog.Nop()))
	require.NoError(t, svc.Open(context.Background(), nc))
	t.Cleanup(func() { require.NoError(t, svc.Close(context.Background())) })
	f := &fixture{t: t, url: jstest.URL(srv), nc: nc, log: log, svc: svc}
	msg, err := f.nc.Request("$SRV.INFO."+ServiceName, nil, 5*time.Second)
	require.NoError(t, err)
	var info micro.Info
	require.NoError(t, json.Unmarshal(msg.Data, &info))
	require.Equal(t, ServiceName, info.Name)
	subjects := map[string]bool{}
	for _, e := range info.Endpoints {
		subjects[e.Subject] = true
	}
	for _, s := range CommandSubjects() {
		require.True(t, subjects[s], s)
	}
	require.True(t, subjects["sr.cmd.vm.planned_failover"])
	require.True(t, subjects["sr.q.vms"])
	require.True(t, subjects["sr.cmd.agent.*.heartbeat"], "extension endpoints: %v", subjects)
	_, err = f.nc.Request("$SRV.PING."+ServiceName, nil, 5*time.Second)
	require.NoError(t, err)

	r := f.request("sr.q.vm", m{"vm": "nope"})
	require.Equal(t, CodeNotFound, r.Code)
	r = f.request("sr.q.vm", m{"vm": "nope", "after_seq": "x"})
	require.Equal(t, CodeInvalidArgument, r.Code)
}
