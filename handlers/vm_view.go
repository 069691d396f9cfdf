package handlers

import (
	"time"

	"github.com/siterecovery/siterecovery/events"
)

// opStart is the event that started a VM operation: its log sequence, its
// job (correlation id) and when it was decided.
type opStart struct {
	Seq uint64
	Job string
	At  time.Time
}

// failoverRun is the failover a VM is in or was last in.
type failoverRun struct {
	opStart
	Data events.FailoverStartedData
	// StartEpoch is the VM's epoch when the failover started (e).
	StartEpoch uint64
	// Stopped is set once source_stopped was recorded for this failover.
	Stopped bool
	// Ended is set by failover_completed, failover_failed or
	// failover_cancelled of this failover; Cancelled by the last.
	Ended     bool
	Cancelled bool
}

// vmView is a VM and the operations it is in: what the failover reports and
// the process manager decide with, folded from the VM's history.
type vmView struct {
	events.VM
	Failover failoverRun
	Test     opStart
	// TestPoint and TestHost are the last test failover's point and host.
	TestPoint string
	TestHost  string
	Cleanup   opStart
	Commit    opStart
	Reverse   opStart
	// ReverseResync is the resync flag of the last reverse_replication_started.
	ReverseResync bool
	Resync        opStart
	// Divergences are the (host, epoch) divergences recorded.
	Divergences map[divergenceKey]bool
}

type divergenceKey struct {
	Host  string
	Epoch uint64
}

func foldView(recs []events.Record) vmView {
	var v vmView
	for _, r := range recs {
		v.apply(r)
	}
	return v
}

func startOf(r events.Record) opStart {
	job := r.Meta.CorrelationID
	if job == "" {
		job = r.Meta.CommandID
	}
	return opStart{Seq: r.Seq, Job: job, At: r.Meta.At}
}

func (v *vmView) apply(r events.Record) {
	epoch := v.Epoch
	v.VM.Apply(r)
	switch d := r.Data.(type) {
	case events.VMCreatedData:
		*v = vmView{VM: v.VM}
	case events.FailoverStartedData:
		v.Failover = failoverRun{opStart: startOf(r), Data: d, StartEpoch: epoch}
	case events.SourceStoppedData:
		v.Failover.Stopped = true
	case events.FailoverCompletedData:
		v.Failover.Ended = true
	case events.FailoverCancelledData:
		v.Failover.Ended, v.Failover.Cancelled = true, true
	case events.FailoverFailedData:
		if d.Mode == events.FailoverTest {
			v.Test = opStart{}
			return
		}
		v.Failover.Ended = true
	case events.TestFailoverStartedData:
		v.Test, v.TestPoint, v.TestHost = startOf(r), d.RecoveryPoint, d.Host
	case events.FailoverCommittedData:
		v.Commit = startOf(r)
	case events.TestCleanupStartedData:
		v.Cleanup = startOf(r)
	case events.ReverseReplicationStartedData:
		v.Reverse, v.ReverseResync = startOf(r), d.Resync
	case events.ResyncStartedData:
		v.Resync = startOf(r)
	case events.DivergenceDetectedData:
		if v.Divergences == nil {
			v.Divergences = map[divergenceKey]bool{}
		}
		v.Divergences[divergenceKey{d.Host, d.Epoch}] = true
	}
}

// job is the job id a report's events carry: the report's own, else the job
// of the operation the VM is in.
func reportJob(given, current string) string {
	if given != "" {
		return given
	}
	return current
}
