package handlers

import (
	"fmt"
	"slices"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/agentproto"
)

// The failover reports of host agents (agentproto.FailoverVerbs), decided
// over the VM's view (vmView): the VM and the operation it is in.

// decision is what a failover report appends: events under job.
type decision struct {
	evs []events.Data
	job string
}

func decided(job string, evs ...events.Data) (decision, error) {
	return decision{evs: evs, job: job}, nil
}

func viewStateErr(v *vmView, what string) error { return stateErr(&v.VM, what) }

// decideVMStopped: the failover's source host stopped the VM at the
// failover's starting epoch; recorded once per failover. A stop that comes
// after the failover failed (its step timed out) is recorded too, under the
// failed job: it is true, the source stays stopped, and a planned_failover
// again goes on from there (docs/operations.md). A report naming another
// job than the VM's last failover's (a late answer to a failover started
// again since), or one of a cancelled failover (the source serves again),
// appends nothing.
func decideVMStopped(v vmView, host string, r agentproto.VMStoppedReport) (decision, error) {
	f := v.Failover
	switch {
	case f.Seq == 0:
		return decision{}, viewStateErr(&v, agentproto.VerbVMStopped)
	case host != f.Data.FromHost:
		return decision{}, unauthorized(host, "failover source", &v.VM)
	case r.Epoch != f.StartEpoch:
		return decision{}, invalidArg("vm_stopped at epoch %d: the failover of vm %s started at epoch %d", r.Epoch, v.Name, f.StartEpoch)
	case f.Data.Mode == events.FailoverPlanned && r.FinalCycle == 0:
		return decision{}, invalidArg("vm_stopped of a planned failover: final_cycle is required")
	case f.Stopped || f.Cancelled || (r.Job != "" && r.Job != f.Job):
		return decision{}, nil
	}
	return decided(reportJob(r.Job, f.Job), events.SourceStoppedData{Host: host, FinalCycle: r.FinalCycle, Roots: r.Roots, RootsHash: r.RootsHash})
}

// decideFailoverReady: the failover's recovery host serves the VM at e+1. A
// planned failover needs the source stopped first. A repeat (or the report
// after change_recovery_point) appends nothing. nets maps a source network to
// its target network.
func decideFailoverReady(v vmView, host string, r agentproto.FailoverReadyReport, nets map[string]string) (decision, error) {
	f := v.Failover
	if f.Seq == 0 {
		return decision{}, viewStateErr(&v, agentproto.VerbFailoverReady)
	}
	if host != f.Data.ToHost {
		return decision{}, unauthorized(host, "failover target", &v.VM)
	}
	if r.Epoch != f.StartEpoch+1 {
		return decision{}, invalidArg("failover_ready at epoch %d: the failover of vm %s serves at epoch %d", r.Epoch, v.Name, f.StartEpoch+1)
	}
	if err := checkDisks(&v.VM, r.Disks); err != nil {
		return decision{}, err
	}
	switch v.State {
	case events.FailoverCommitPending:
		return decision{}, nil
	case events.PlannedFailoverInProgress:
		if !f.Stopped {
			return decision{}, fmt.Errorf("vm %s: failover_ready before the source reported vm_stopped: %w", v.Name, events.ErrInvalidState)
		}
	case events.UnplannedFailoverInProgress:
	default:
		return decision{}, viewStateErr(&v, agentproto.VerbFailoverReady)
	}
	rp := r.RecoveryPoint
	if rp == "" {
		rp = f.Data.RecoveryPoint
	}
	if err := events.ValidateToken("recovery_point", rp); err != nil {
		return decision{}, fmt.Errorf("failover_ready: %w: %w", events.ErrInvalidArgument, err)
	}
	evs := []events.Data{events.FailoverCompletedData{
		Mode: f.Data.Mode, RecoveryPoint: rp, Epoch: r.Epoch, Host: host, Site: f.Data.ToSite, NICs: mapNICs(v.Networks, nets),
	}}
	for _, d := range r.Disks {
		evs = append(evs, events.DiskProvisionedData{Host: host, Disk: d.Disk, Role: events.DiskRoleSource, Image: d.Image, NBDURL: d.NBDURL, Epoch: r.Epoch})
	}
	return decided(reportJob(r.Job, f.Job), evs...)
}

// mapNICs puts each VM network on its mapped target network; an unmapped
// one gets no network, as ASR does.
func mapNICs(networks []string, nets map[string]string) []events.NIC {
	var nics []events.NIC
	for _, n := range networks {
		nics = append(nics, events.NIC{SourceNetwork: n, TargetNetwork: nets[n]})
	}
	return nics
}

// checkDisks wants every disk of the VM once, each with an image.
func checkDisks(vm *events.VM, disks []agentproto.ReadyDisk) error {
	if len(disks) != len(vm.Disks) {
		return invalidArg("vm %s has %d disks, the report names %d", vm.Name, len(vm.Disks), len(disks))
	}
	for i, d := range disks {
		if !slices.ContainsFunc(vm.Disks, func(s events.DiskSpec) bool { return s.Name == d.Disk }) {
			return invalidArg("vm %s has no disk %q", vm.Name, d.Disk)
		}
		if slices.ContainsFunc(disks[:i], func(o agentproto.ReadyDisk) bool { return o.Disk == d.Disk }) {
			return invalidArg("disk %s named twice", d.Disk)
		}
		if d.Image == "" {
			return invalidArg("disk %s: image path is required", d.Disk)
		}
	}
	return nil
}

// decideTestFailoverReady: the test host serves the test copy.
func decideTestFailoverReady(v vmView, host string, r agentproto.TestFailoverReadyReport) (decision, error) {
	if v.Test.Seq == 0 || host != v.TestHost {
		return decision{}, unauthorized(host, "test failover", &v.VM)
	}
	if err := checkDisks(&v.VM, r.Disks); err != nil {
		return decision{}, err
	}
	switch v.TestState {
	case events.TestCompleted:
		return decision{}, nil
	case events.TestInProgress:
	default:
		return decision{}, fmt.Errorf("vm %s: test_failover_ready while the test failover is %s: %w", v.Name, v.TestState, events.ErrInvalidState)
	}
	var evs []events.Data
	for _, d := range r.Disks {
		evs = append(evs, events.DiskProvisionedData{Host: host, Disk: d.Disk, Role: events.DiskRoleTest, Image: d.Image, NBDURL: d.NBDURL, Epoch: v.Epoch})
	}
	evs = append(evs, events.TestFailoverCompletedData{RecoveryPoint: v.TestPoint})
	return decided(reportJob(r.Job, v.Test.Job), evs...)
}

// decideTestCleanupDone: the test copy is gone.
func decideTestCleanupDone(v vmView, host string, r agentproto.TestCleanupDoneReport) (decision, error) {
	if v.Test.Seq == 0 || host != v.TestHost {
		return decision{}, unauthorized(host, "test failover", &v.VM)
	}
	switch v.TestState {
	case events.TestNone:
		return decision{}, nil
	case events.TestCleaningUp:
		return decided(reportJob(r.Job, v.Cleanup.Job), events.TestFailoverCleanedUpData{})
	}
	return decision{}, fmt.Errorf("vm %s: test_cleanup_done while the test failover is %s: %w", v.Name, v.TestState, events.ErrInvalidState)
}

// resyncJob is the job of the resync the VM is in, if it is in one: a
// resync of its own, or the resync of a reverse replication.
func resyncJob(v *vmView) (string, bool) {
	switch {
	case v.State == events.Resynchronizing:
		return v.Resync.Job, true
	case v.State == events.ReverseReplicationState && v.ReverseResync:
		return v.Reverse.Job, true
	}
	return "", false
}

func checkResyncHost(v *vmView, host string) error {
	if host != v.SourceHost && host != v.RecoveryHost {
		return unauthorized(host, "source or recovery", &v.VM)
	}
	return nil
}

// decideResyncProgress records a resync's progress.
func decideResyncProgress(v vmView, host string, r agentproto.ResyncProgressReport) (decision, error) {
	if err := checkResyncHost(&v, host); err != nil {
		return decision{}, err
	}
	if r.DoneBytes < 0 || r.SentBytes < 0 || r.DoneBytes > r.TotalBytes {
		return decision{}, invalidArg("resync progress %d of %d bytes, %d sent", r.DoneBytes, r.TotalBytes, r.SentBytes)
	}
	job, ok := resyncJob(&v)
	if !ok {
		return decision{}, viewStateErr(&v, agentproto.VerbResyncProgress)
	}
	return decided(reportJob(r.Job, job), events.ResyncProgressData{DoneBytes: r.DoneBytes, TotalBytes: r.TotalBytes, SentBytes: r.SentBytes})
}

// decideResyncCompleted ends a resync: Protected; a reverse replication's
// resync also completes the reverse replication. A repeat appends nothing.
func decideResyncCompleted(v vmView, host string, r agentproto.ResyncCompletedReport) (decision, error) {
	if err := checkResyncHost(&v, host); err != nil {
		return decision{}, err
	}
	if r.SentBytes < 0 {
		return decision{}, invalidArg("resync sent bytes %d", r.SentBytes)
	}
	job, ok := resyncJob(&v)
	switch {
	case !ok && v.State == events.Protected:
		return decision{}, nil
	case !ok:
		return decision{}, viewStateErr(&v, agentproto.VerbResyncCompleted)
	}
	evs := []events.Data{events.ResyncCompletedData{SentBytes: r.SentBytes}}
	if v.State == events.ReverseReplicationState {
		evs = append(evs, events.ReverseReplicationCompletedData{SentBytes: r.SentBytes})
	}
	return decided(reportJob(r.Job, job), evs...)
}

// decideDivergence records, once per host and epoch, that a fenced former
// source kept writes made after the failover aside. A report of no block
// is no divergence: nothing is recorded.
func decideDivergence(v vmView, host string, r agentproto.DivergenceReport) (decision, error) {
	switch {
	case host == v.ActiveHost:
		return decision{}, invalidArg("host %s runs vm %s: it cannot have diverged", host, v.Name)
	case r.Epoch == 0 || r.Epoch >= v.Epoch:
		return decision{}, invalidArg("divergence at epoch %d: vm %s is at epoch %d", r.Epoch, v.Name, v.Epoch)
	case r.Blocks < 0:
		return decision{}, invalidArg("divergence of %d blocks", r.Blocks)
	case r.Blocks == 0, v.Divergences[divergenceKey{host, r.Epoch}]:
		return decision{}, nil
	}
	return decided(reportJob(r.Job, v.Failover.Job), events.DivergenceDetectedData{
		Host: host, Epoch: r.Epoch, Blocks: r.Blocks, AsideImages: r.AsideImages,
	})
}
