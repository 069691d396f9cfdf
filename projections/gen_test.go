package projections

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/siterecovery/siterecovery/events"
)

// gen makes random valid event sequences: for each VM it folds the events
// it made with events.VM.Apply and picks the next among those the state
// allows, as the handlers and agents would emit them.
type gen struct {
	w    *world
	rng  *rand.Rand
	vms  []*genVM
	plan int
	// starts counts the events that start a job (a new correlation id).
	starts int
}

type genVM struct {
	name    string
	state   events.VM
	op      string // correlation id of the running operation
	test    string // correlation id of the running test failover
	rpN     int
	ops     int
	created bool
}

// newGen builds the fabric and a recovery plan, then makes events for vms
// VMs.
func newGen(w *world, seed uint64, vms int) *gen {
	g := &gen{w: w, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	w.buildFabric()
	w.emit(events.PlanAgg("shop"), "", events.PlanCreatedData{Name: "shop", Groups: []events.PlanGroup{{VMs: []string{"vm000"}}}})
	for i := range vms {
		g.vms = append(g.vms, &genVM{name: fmt.Sprintf("vm%03d", i)})
	}
	return g
}

// step appends one random event (or a few for one command) and returns the
// last sequence.
func (g *gen) step() uint64 {
	switch g.rng.IntN(20) {
	case 0:
		return g.fabricEvent()
	case 1:
		return g.planEvent()
	}
	v := g.vms[g.rng.IntN(len(g.vms))]
	if !v.created {
		v.created = true
		return g.emitVM(v, "create-"+v.name, events.VMCreatedData{Name: v.name, Host: "hv01", Site: "primary", Cloud: "gold",
			Disks: []events.DiskSpec{{Name: "disk0", Size: 1 << 30}, {Name: "disk1", Size: 1 << 20}}})
	}
	cands := g.candidates(v)
	c := cands[g.rng.IntN(len(cands))]
	return c()
}

func (g *gen) emitVM(v *genVM, corr string, d ...events.Data) uint64 {
	seq := g.w.emit(events.VMAgg(v.name), corr, d...)
	for i, ev := range d {
		v.state.Apply(events.Record{Seq: seq - uint64(len(d)-1-i), Aggregate: events.VMAgg(v.name), Data: ev})
	}
	return seq
}

// start emits an event that starts an operation under a new correlation id.
func (g *gen) start(v *genVM, d events.Data) func() uint64 {
	return func() uint64 {
		v.ops++
		v.op = fmt.Sprintf("%s-op%d", v.name, v.ops)
		g.starts++
		return g.emitVM(v, v.op, d)
	}
}

// then emits an event of the running operation, under its correlation id
// or, as agents report, under one of its own.
func (g *gen) then(v *genVM, d events.Data) func() uint64 {
	return func() uint64 {
		corr := v.op
		if g.rng.IntN(2) == 0 {
			corr = fmt.Sprintf("agent-%d", g.w.n)
		}
		return g.emitVM(v, corr, d)
	}
}

func (g *gen) candidates(v *genVM) []func() uint64 {
	s := &v.state
	var c []func() uint64
	c = append(c, g.agentEvents(v)...)
	switch s.State {
	case events.Unprotected, events.EnablingFailed:
		c = append(c, g.start(v, enableData(v.name)))
	case events.EnablingProtection:
		c = append(c, g.then(v, events.InitialReplicationStartedData{TotalBytes: 1 << 30}),
			g.then(v, events.ProtectionEnableFailedData{Reason: "no route to hv02"}))
	case events.InitialReplication:
		c = append(c, g.then(v, events.InitialReplicationProgressData{DoneBytes: g.rng.Int64N(1 << 30), TotalBytes: 1 << 30}),
			g.then(v, events.InitialReplicationCompletedData{SentBytes: 1 << 30}))
	case events.Protected:
		c = append(c, g.protectedEvents(v)...)
	case events.Paused:
		c = append(c, g.start(v, events.ReplicationResumedData{}))
	case events.ResyncRequiredState:
		c = append(c, g.start(v, events.ResyncStartedData{TotalBytes: 1 << 30}))
	case events.Resynchronizing:
		c = append(c, g.then(v, events.ResyncProgressData{DoneBytes: 1 << 29, TotalBytes: 1 << 30, SentBytes: 4096}),
			g.then(v, events.ResyncCompletedData{SentBytes: 8192}))
	default:
		c = append(c, g.failoverEvents(v)...)
	}
	if s.Check(events.OpDisable) == nil {
		c = append(c, g.start(v, events.ProtectionDisableStartedData{DeleteReplica: true}))
	}
	return c
}

func (g *gen) protectedEvents(v *genVM) []func() uint64 {
	s := &v.state
	c := []func() uint64{
		g.start(v, events.ReplicationPausedData{}),
		func() uint64 { return g.emitVM(v, "agent", events.ResyncRequiredData{Reason: "change log overflow"}) },
		g.start(v, events.FailoverStartedData{Mode: events.FailoverPlanned, ShutdownSource: true,
			FromHost: s.SourceHost, ToHost: s.RecoveryHost, FromSite: s.SourceSite, ToSite: s.TargetSite}),
		g.start(v, events.FailoverStartedData{Mode: events.FailoverUnplanned, RecoveryPoint: "latest",
			FromHost: s.SourceHost, ToHost: s.RecoveryHost, FromSite: s.SourceSite, ToSite: s.TargetSite}),
	}
	if s.TestState == events.TestNone {
		c = append(c, func() uint64 {
			v.ops++
			v.test = fmt.Sprintf("%s-test%d", v.name, v.ops)
			g.starts++
			return g.emitVM(v, v.test, events.TestFailoverStartedData{RecoveryPoint: "latest", Host: s.RecoveryHost})
		})
	}
	return c
}

// agentEvents are the reports that may come in any state.
func (g *gen) agentEvents(v *genVM) []func() uint64 {
	s := &v.state
	c := []func() uint64{
		func() uint64 {
			return g.emitVM(v, "agent", events.DiskProvisionedData{Host: s.ActiveHost, Disk: "disk0", Role: events.DiskRoleSource,
				Image: fmt.Sprintf("/d/%s/%s/%d", s.ActiveHost, v.name, s.Epoch), Epoch: s.Epoch})
		},
		func() uint64 {
			h := []string{events.HealthNormal, events.HealthWarning, events.HealthCritical}[g.rng.IntN(3)]
			return g.emitVM(v, "agent", events.HealthChangedData{Health: h, Issues: []string{h}})
		},
	}
	if s.RecoveryHost != "" {
		c = append(c, func() uint64 {
			v.rpN++
			return g.emitVM(v, "agent", events.RecoveryPointCreatedData{ID: fmt.Sprintf("rp%d", v.rpN),
				Time: g.w.at, AppConsistent: v.rpN%4 == 0, Cycle: uint64(v.rpN), Epoch: s.Epoch})
		})
	}
	if len(s.RecoveryPoints) > 3 {
		c = append(c, func() uint64 {
			return g.emitVM(v, "agent", events.RecoveryPointsPrunedData{IDs: []string{s.RecoveryPoints[0].ID, s.RecoveryPoints[1].ID}})
		})
	}
	c = append(c, g.testEvents(v)...)
	return c
}

func (g *gen) testEvents(v *genVM) []func() uint64 {
	in := func(d events.Data) func() uint64 { return func() uint64 { return g.emitVM(v, v.test, d) } }
	switch v.state.TestState {
	case events.TestInProgress:
		return []func() uint64{in(events.TestFailoverCompletedData{RecoveryPoint: "latest"})}
	case events.TestCompleted:
		return []func() uint64{func() uint64 {
			v.ops++
			v.test = fmt.Sprintf("%s-cleanup%d", v.name, v.ops)
			g.starts++
			return g.emitVM(v, v.test, events.TestCleanupStartedData{})
		}}
	case events.TestCleaningUp:
		return []func() uint64{in(events.TestFailoverCleanedUpData{})}
	}
	return nil
}

func (g *gen) failoverEvents(v *genVM) []func() uint64 {
	s := &v.state
	switch s.State {
	case events.PlannedFailoverInProgress, events.UnplannedFailoverInProgress:
		return []func() uint64{
			g.then(v, events.SourceStoppedData{Host: s.SourceHost, FinalCycle: uint64(v.rpN)}),
			g.then(v, events.FailoverCompletedData{Mode: s.FailoverMode, RecoveryPoint: "latest", Epoch: s.Epoch + 1,
				Host: s.RecoveryHost, Site: s.TargetSite}),
			g.then(v, events.FailoverFailedData{Mode: s.FailoverMode, Step: "stop_source", Reason: "timeout"}),
		}
	case events.PlannedFailoverFailed, events.UnplannedFailoverFailed:
		return []func() uint64{
			g.start(v, events.FailoverStartedData{Mode: s.FailoverMode, FromHost: s.SourceHost, ToHost: s.RecoveryHost,
				FromSite: s.SourceSite, ToSite: s.TargetSite}),
			g.start(v, events.FailoverCancelledData{Epoch: s.Epoch + 1}),
		}
	case events.FailoverCommitPending:
		return []func() uint64{
			g.then(v, events.RecoveryPointChangedData{RecoveryPoint: "rp1"}),
			g.start(v, events.FailoverCommittedData{Mode: s.FailoverMode}),
			g.start(v, events.FailoverCancelledData{Epoch: s.Epoch + 1}),
		}
	case events.FailoverCommittedState:
		return []func() uint64{g.start(v, events.ReverseReplicationStartedData{SourceHost: s.RecoveryHost,
			SourceSite: s.TargetSite, RecoveryHost: s.SourceHost, TargetSite: s.SourceSite, Resync: true})}
	case events.ReverseReplicationState:
		return []func() uint64{g.then(v, events.ReverseReplicationCompletedData{SentBytes: 1})}
	case events.DisablingProtection:
		return []func() uint64{g.then(v, events.ProtectionDisabledData{ReplicaDeleted: true})}
	}
	return nil
}

func (g *gen) fabricEvent() uint64 {
	h := []string{"hv01", "hv02"}[g.rng.IntN(2)]
	if g.rng.IntN(2) == 0 {
		return g.w.emit(events.HostAgg(h), "", events.HostReachableData{Name: h, Since: g.w.at})
	}
	return g.w.emit(events.HostAgg(h), "", events.HostUnreachableData{Name: h, LastSeen: g.w.at.Add(-time.Minute)})
}

// planEvent runs the recovery plan's job a step further.
func (g *gen) planEvent() uint64 {
	agg := events.PlanAgg("shop")
	n := g.plan
	g.plan++
	job := fmt.Sprintf("plan-job%d", n/5)
	switch n % 5 {
	case 0:
		g.starts++
		return g.w.emit(agg, job, events.PlanJobStartedData{Operation: "planned_failover", Job: job})
	case 1:
		return g.w.emit(agg, job, events.PlanGroupStartedData{Job: job, Group: 0})
	case 2:
		return g.w.emit(agg, job, events.PlanSuspendedData{Job: job, Text: "check"})
	case 3:
		return g.w.emit(agg, job, events.PlanResumedData{Job: job})
	}
	return g.w.emit(agg, job, events.PlanJobCompletedData{Job: job, State: events.JobSucceeded})
}
