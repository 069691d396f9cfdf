package handlers

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/agentproto"
)

// protectedVM folds a VM created on hv01 and protected to hv02.
func agentTestVM(t *testing.T, state events.ProtectionState) events.VM {
	t.Helper()
	vm := events.FoldVM([]events.Record{
		{Seq: 1, Data: events.VMCreatedData{Name: "web01", Host: "hv01", Site: "primary", Cloud: "gold", Disks: []events.DiskSpec{{Name: "d0", Size: 1 << 20}}}},
		{Seq: 2, Data: events.ProtectionEnableStartedData{SourceHost: "hv01", SourceSite: "primary", RecoveryHost: "hv02", TargetSite: "dr"}},
	})
	vm.State = state
	return vm
}

func TestDecideRecoveryPoint(t *testing.T) {
	at := time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)
	rp := agentproto.RecoveryPointReport{VM: "web01", ID: "rp-1-5", Time: at, Cycle: 5, Epoch: 1, Bytes: 10}
	cases := []struct {
		name  string
		state events.ProtectionState
		host  string
		mod   func(*agentproto.RecoveryPointReport)
		want  []events.Type
		err   error
	}{
		{"recorded", events.Protected, "hv02", nil, []events.Type{events.RecoveryPointCreated}, nil},
		{"during IR", events.InitialReplication, "hv02", nil, []events.Type{events.RecoveryPointCreated}, nil},
		{"from the source", events.Protected, "hv01", nil, nil, ErrUnauthorized},
		{"from a stranger", events.Protected, "hv09", nil, nil, ErrUnauthorized},
		{"old epoch", events.Protected, "hv02", func(r *agentproto.RecoveryPointReport) { r.Epoch = 0 }, nil, events.ErrInvalidArgument},
		{"bad id", events.Protected, "hv02", func(r *agentproto.RecoveryPointReport) { r.ID = "a b" }, nil, events.ErrInvalidToken},
		{"no cycle", events.Protected, "hv02", func(r *agentproto.RecoveryPointReport) { r.Cycle = 0 }, nil, events.ErrInvalidArgument},
		{"unprotected", events.Unprotected, "hv02", nil, nil, events.ErrInvalidState},
		{"committed", events.FailoverCommittedState, "hv02", nil, nil, events.ErrInvalidState},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			vm := agentTestVM(t, c.state)
			r := rp
			if c.mod != nil {
				c.mod(&r)
			}
			evs, err := DecideRecoveryPoint(vm, c.host, r)
			if c.err != nil {
				require.ErrorIs(t, err, c.err)
				require.Empty(t, evs)
				return
			}
			require.NoError(t, err)
			require.Equal(t, c.want, agentEvTypes(evs))
		})
	}
}

func TestDecideRecoveryPointDuplicateAndHealth(t *testing.T) {
	vm := agentTestVM(t, events.Protected)
	r := agentproto.RecoveryPointReport{VM: "web01", ID: "rp-1-5", Time: time.Now(), Cycle: 5, Epoch: 1}
	vm.Health = events.HealthCritical
	evs, err := DecideRecoveryPoint(vm, "hv02", r)
	require.NoError(t, err)
	require.Equal(t, []events.Type{events.RecoveryPointCreated, events.HealthChanged}, agentEvTypes(evs))
	vm.Apply(events.Record{Seq: 3, Data: evs[0]})
	evs, err = DecideRecoveryPoint(vm, "hv02", r)
	require.NoError(t, err)
	require.Empty(t, evs, "a point id already recorded appends nothing")
}

func TestDecideInitialReplication(t *testing.T) {
	for _, c := range []struct {
		state    events.ProtectionState
		progress []events.Type
		done     []events.Type
		err      bool
	}{
		{events.EnablingProtection, []events.Type{events.InitialReplicationStarted, events.InitialReplicationProgress},
			[]events.Type{events.InitialReplicationStarted, events.InitialReplicationCompleted}, false},
		{events.InitialReplication, []events.Type{events.InitialReplicationProgress}, []events.Type{events.InitialReplicationCompleted}, false},
		{events.Protected, nil, nil, false},
		{events.Unprotected, nil, nil, true},
		{events.DisablingProtection, nil, nil, true},
	} {
		vm := agentTestVM(t, c.state)
		p, perr := DecideIRProgress(vm, "hv01", agentproto.IRProgressReport{VM: "web01", DoneBytes: 1, TotalBytes: 2})
		d, derr := DecideIRCompleted(vm, "hv01", agentproto.IRCompletedReport{VM: "web01", SentBytes: 2})
		if c.err {
			require.ErrorIs(t, perr, events.ErrInvalidState, c.state)
			require.ErrorIs(t, derr, events.ErrInvalidState, c.state)
			continue
		}
		require.NoError(t, perr)
		require.NoError(t, derr)
		require.Equal(t, c.progress, agentEvTypes(p), c.state)
		require.Equal(t, c.done, agentEvTypes(d), c.state)
	}
	vm := agentTestVM(t, events.InitialReplication)
	_, err := DecideIRProgress(vm, "hv02", agentproto.IRProgressReport{VM: "web01"})
	require.ErrorIs(t, err, ErrUnauthorized)
	_, err = DecideIRProgress(vm, "hv01", agentproto.IRProgressReport{VM: "web01", DoneBytes: 3, TotalBytes: 2})
	require.ErrorIs(t, err, events.ErrInvalidArgument)
}

func TestDecideDiskProvisioned(t *testing.T) {
	vm := agentTestVM(t, events.EnablingProtection)
	src := agentproto.DiskProvisionedReport{VM: "web01", Disk: "d0", Role: events.DiskRoleSource, Image: "/d/web01/d0.img", NBDURL: "nbd+unix:///web01-d0?socket=/d/nbd.sock", Epoch: 1}
	evs, err := DecideDiskProvisioned(vm, "hv01", src)
	require.NoError(t, err)
	require.Equal(t, []events.Type{events.DiskProvisioned}, agentEvTypes(evs))
	vm.Apply(events.Record{Seq: 3, Data: evs[0]})
	evs, err = DecideDiskProvisioned(vm, "hv01", src)
	require.NoError(t, err)
	require.Empty(t, evs, "the same image again appends nothing")

	_, err = DecideDiskProvisioned(vm, "hv02", src)
	require.ErrorIs(t, err, ErrUnauthorized)
	rep := src
	rep.Role = events.DiskRoleReplica
	_, err = DecideDiskProvisioned(vm, "hv01", rep)
	require.ErrorIs(t, err, ErrUnauthorized)
	evs, err = DecideDiskProvisioned(vm, "hv02", rep)
	require.NoError(t, err)
	require.Len(t, evs, 1)
	bad := src
	bad.Disk = "d9"
	_, err = DecideDiskProvisioned(vm, "hv01", bad)
	require.ErrorIs(t, err, events.ErrInvalidArgument)
	bad = src
	bad.Role = "other"
	_, err = DecideDiskProvisioned(vm, "hv01", bad)
	require.ErrorIs(t, err, events.ErrInvalidArgument)
	_, err = DecideDiskProvisioned(events.VM{}, "hv01", src)
	require.ErrorIs(t, err, events.ErrNotFound)
}

func TestDecideErrorPrunedDisabled(t *testing.T) {
	vm := agentTestVM(t, events.Protected)
	evs, err := DecideError(vm, "hv01", agentproto.ErrorReport{VM: "web01", Code: agentproto.CodeResyncRequired, Message: "log overflow"})
	require.NoError(t, err)
	require.Equal(t, []events.Type{events.ResyncRequired, events.HealthChanged}, agentEvTypes(evs))
	evs, err = DecideError(vm, "hv02", agentproto.ErrorReport{VM: "web01", Code: "bad_batch", Message: "crc"})
	require.NoError(t, err)
	require.Equal(t, []events.Type{events.ReplicationError, events.HealthChanged}, agentEvTypes(evs))
	_, err = DecideError(vm, "hv09", agentproto.ErrorReport{VM: "web01", Code: "x"})
	require.ErrorIs(t, err, ErrUnauthorized)
	_, err = DecideError(vm, "hv01", agentproto.ErrorReport{VM: "web01", Code: "not a token"})
	require.ErrorIs(t, err, events.ErrInvalidToken)
	resync := agentTestVM(t, events.ResyncRequiredState)
	evs, err = DecideError(resync, "hv01", agentproto.ErrorReport{VM: "web01", Code: agentproto.CodeResyncRequired})
	require.NoError(t, err)
	require.Empty(t, evs)

	vm.RecoveryPoints = []events.RecoveryPoint{{ID: "a"}, {ID: "b"}}
	evs, err = DecidePointsPruned(vm, "hv02", agentproto.PointsPrunedReport{VM: "web01", IDs: []string{"a", "zz", "a"}})
	require.NoError(t, err)
	require.Equal(t, []events.Data{events.RecoveryPointsPrunedData{IDs: []string{"a"}}}, evs)
	evs, err = DecidePointsPruned(vm, "hv02", agentproto.PointsPrunedReport{VM: "web01", IDs: []string{"zz"}})
	require.NoError(t, err)
	require.Empty(t, evs)
	_, err = DecidePointsPruned(vm, "hv01", agentproto.PointsPrunedReport{VM: "web01", IDs: []string{"a"}})
	require.ErrorIs(t, err, ErrUnauthorized)

	_, err = DecideDisabled(vm, "hv02", agentproto.DisabledReport{VM: "web01"})
	require.ErrorIs(t, err, events.ErrInvalidState)
	disabling := agentTestVM(t, events.DisablingProtection)
	evs, err = DecideDisabled(disabling, "hv02", agentproto.DisabledReport{VM: "web01", ReplicaDeleted: true})
	require.NoError(t, err)
	require.Equal(t, []events.Data{events.ProtectionDisabledData{ReplicaDeleted: true}}, evs)
	_, err = DecideDisabled(disabling, "hv01", agentproto.DisabledReport{VM: "web01"})
	require.ErrorIs(t, err, ErrUnauthorized)
}

// TestAgentHandlersOnLog runs reports through Handle against a MemLog.
func TestAgentHandlersOnLog(t *testing.T) {
	ctx := context.Background()
	log := events.NewMemLog()
	meta := events.Meta{CommandID: "c1"}
	_, err := log.Append(ctx, events.VMAgg("web01"), 0, meta,
		events.VMCreatedData{Name: "web01", Host: "hv01", Site: "primary", Disks: []events.DiskSpec{{Name: "d0", Size: 1 << 20}}},
		events.ProtectionEnableStartedData{SourceHost: "hv01", RecoveryHost: "hv02", TargetSite: "dr"})
	require.NoError(t, err)
	_, err = log.Append(ctx, events.HostAgg("hv01"), 0, meta, events.HostRegisteredData{Name: "hv01", Site: "primary"})
	require.NoError(t, err)
	a := NewAgentHandlers(log, 50*time.Millisecond, zerolog.Nop())

	body := func(v any) []byte { b, _ := json.Marshal(v); return b }
	res, err := a.Handle(ctx, "hv01", agentproto.VerbIRProgress, body(agentproto.IRProgressReport{VM: "web01", DoneBytes: 1, TotalBytes: 4}))
	require.NoError(t, err)
	require.Len(t, res.Seqs, 2)
	rp := agentproto.RecoveryPointReport{CommandID: "rp-web01-1-1", VM: "web01", ID: "p1", Time: time.Now(), Cycle: 1, Epoch: 1}
	_, err = a.Handle(ctx, "hv02", agentproto.VerbRecoveryPoint, body(rp))
	require.NoError(t, err)
	res, err = a.Handle(ctx, "hv02", agentproto.VerbRecoveryPoint, body(rp))
	require.NoError(t, err)
	require.Empty(t, res.Seqs)
	_, err = a.Handle(ctx, "hv01", agentproto.VerbRecoveryPoint, body(rp))
	require.ErrorIs(t, err, ErrUnauthorized)
	require.Equal(t, CodeUnauthorized, Code(err))
	_, err = a.Handle(ctx, "hv01", "nonsense", body(rp))
	require.Equal(t, CodeInvalidArgument, Code(err))
	_, err = a.Handle(ctx, "hv01", agentproto.VerbRecoveryPoint, []byte("{garbage"))
	require.Equal(t, CodeInvalidArgument, Code(err))

	_, err = a.Handle(ctx, "hv01", agentproto.VerbHeartbeat, body(agentproto.HeartbeatReport{Agent: "test"}))
	require.NoError(t, err)
	recs, err := log.Load(ctx, events.HostAgg("hv01"))
	require.NoError(t, err)
	require.Equal(t, events.HostReachable, recs[len(recs)-1].Type())
	require.Eventually(t, func() bool {
		require.NoError(t, a.Sweep(ctx))
		recs, err := log.Load(ctx, events.HostAgg("hv01"))
		require.NoError(t, err)
		return recs[len(recs)-1].Type() == events.HostUnreachable
	}, 5*time.Second, 20*time.Millisecond)
}

// TestAgentHandlersReachabilityOnLog: a heartbeat that came before its
// host was registered makes the host reachable at the next sweep; a host
// never heard from stays unknown for the threshold after its registration,
// then is unreachable.
func TestAgentHandlersReachabilityOnLog(t *testing.T) {
	ctx := context.Background()
	log := events.NewMemLog()
	a := NewAgentHandlers(log, 200*time.Millisecond, zerolog.Nop())
	body, _ := json.Marshal(agentproto.HeartbeatReport{Agent: "test"})
	_, err := a.Handle(ctx, "hv01", agentproto.VerbHeartbeat, body)
	require.ErrorIs(t, err, events.ErrNotFound, "not registered yet")
	for _, h := range []string{"hv01", "hv02"} {
		_, err = log.Append(ctx, events.HostAgg(h), 0, events.Meta{CommandID: "reg-" + h, At: time.Now().UTC()},
			events.HostRegisteredData{Name: h, Site: "primary"})
		require.NoError(t, err)
	}
	reach := func(h string) events.Reachability {
		recs, err := log.Load(ctx, events.HostAgg(h))
		require.NoError(t, err)
		host := foldHost(recs)
		return host.Reach()
	}
	require.Equal(t, events.ReachabilityUnknown, reach("hv01"))
	require.NoError(t, a.Sweep(ctx, "hv01", "hv02"))
	require.Equal(t, events.ReachabilityReachable, reach("hv01"), "the heartbeat before the registration counts")
	require.Equal(t, events.ReachabilityUnknown, reach("hv02"), "registered just now, never heard")
	require.Eventually(t, func() bool {
		require.NoError(t, a.Sweep(ctx, "hv02"))
		return reach("hv02") == events.ReachabilityUnreachable
	}, 5*time.Second, 20*time.Millisecond, "never heard within the threshold of its registration")
}

func agentEvTypes(evs []events.Data) []events.Type {
	var out []events.Type
	for _, e := range evs {
		out = append(out, e.EventType())
	}
	return out
}

// FuzzAgentReports: whatever a host sends, a report either appends events
// or is refused with a clear error and appends nothing; nothing panics.
func FuzzAgentReports(f *testing.F) {
	f.Add(uint8(0), "hv02", []byte(`{"vm":"web01","id":"p1","time":"2026-11-26T01:00:00Z","cycle":1,"epoch":1}`))
	f.Add(uint8(1), "hv01", []byte(`{"vm":"web01","done_bytes":1,"total_bytes":2}`))
	f.Add(uint8(2), "hv01", []byte(`{"vm":"web01","disk":"d0","role":"source","image":"/x"}`))
	f.Add(uint8(3), "hv01", []byte(`{"vm":"web01","code":"resync_required"}`))
	f.Add(uint8(4), "hv09", []byte(`{`))
	f.Fuzz(func(t *testing.T, verb uint8, host string, body []byte) {
		ctx := context.Background()
		log := events.NewMemLog()
		_, err := log.Append(ctx, events.VMAgg("web01"), 0, events.Meta{CommandID: "c1"},
			events.VMCreatedData{Name: "web01", Host: "hv01", Site: "primary", Disks: []events.DiskSpec{{Name: "d0", Size: 1 << 20}}},
			events.ProtectionEnableStartedData{SourceHost: "hv01", RecoveryHost: "hv02", TargetSite: "dr"})
		require.NoError(t, err)
		before, err := log.LastSeq(ctx)
		require.NoError(t, err)
		a := NewAgentHandlers(log, time.Minute, zerolog.Nop())
		res, err := a.Handle(ctx, host, agentproto.ReplicationVerbs[int(verb)%len(agentproto.ReplicationVerbs)], body)
		after, lerr := log.LastSeq(ctx)
		require.NoError(t, lerr)
		if err != nil {
			require.Equal(t, before, after, "a refused report appended events")
			require.NotEqual(t, CodeUnavailable, Code(err), "refusal without a code: %v", err)
			return
		}
		require.Equal(t, int(after-before), len(res.Seqs))
	})
}
