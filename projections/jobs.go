package projections

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/siterecovery/siterecovery/events"
)

// Job is one operation, as ASR's jobs view shows it: the event that starts
// the operation creates it under the event's correlation id, and each later
// event with that correlation id adds a step.
type Job struct {
	ID         string     `json:"id"`
	Operation  string     `json:"operation"`
	TargetKind string     `json:"target_kind"`
	Target     string     `json:"target"`
	State      string     `json:"state"`
	StartedAt  time.Time  `json:"started_at"`
	EndedAt    *time.Time `json:"ended_at"`
	Steps      []Step     `json:"steps"`
	Errors     []string   `json:"errors"`
	// Seq is the log sequence of the event that started the job.
	Seq uint64 `json:"seq"`
}

// Step is one event of a job.
type Step struct {
	Seq    uint64    `json:"seq"`
	Name   string    `json:"name"`
	Time   time.Time `json:"time"`
	State  string    `json:"state"`
	Detail string    `json:"detail,omitempty"`
}

// jobStarts names the operation each starting event type begins
// (failover_started and plan_job_started are named from their data).
var jobStarts = map[events.Type]string{
	events.ProtectionEnableStarted:   "EnableProtection",
	events.ProtectionDisableStarted:  "DisableProtection",
	events.TestFailoverStarted:       "TestFailover",
	events.TestCleanupStarted:        "TestFailoverCleanup",
	events.FailoverCommitted:         "Commit",
	events.FailoverCancelled:         "CancelFailover",
	events.ReverseReplicationStarted: "ReverseReplication",
	events.ResyncStarted:             "Resync",
	events.ReplicationPaused:         "PauseReplication",
	events.ReplicationResumed:        "ResumeReplication",
}

// jobSucceeds lists the event types that end their job with success.
var jobSucceeds = map[events.Type]bool{
	events.InitialReplicationCompleted: true, events.TestFailoverCompleted: true,
	events.TestFailoverCleanedUp: true, events.FailoverCompleted: true, events.FailoverCommitted: true,
	events.FailoverCancelled: true, events.ReverseReplicationCompleted: true, events.ResyncCompleted: true,
	events.ProtectionDisabled: true, events.ReplicationPaused: true, events.ReplicationResumed: true,
}

// planOperations names plan operations as the VM jobs are named.
var planOperations = map[string]string{
	"test_failover": "TestFailover", "test_cleanup": "TestFailoverCleanup",
	"planned_failover": "PlannedFailover", "unplanned_failover": "UnplannedFailover",
	"commit": "Commit", "reverse": "ReverseReplication", "cancel_failover": "CancelFailover",
}

// startedOperation returns the operation r starts, if it starts one.
func startedOperation(r events.Record) (string, bool) {
	switch d := r.Data.(type) {
	case events.FailoverStartedData:
		if d.Mode == events.FailoverUnplanned {
			return "UnplannedFailover", true
		}
		return "PlannedFailover", true
	case events.PlanJobStartedData:
		if op, ok := planOperations[d.Operation]; ok {
			return "Plan" + op, true
		}
		return "Plan" + camel(d.Operation), true
	}
	op, ok := jobStarts[r.Type()]
	return op, ok
}

func camel(s string) string {
	var b strings.Builder
	for part := range strings.SplitSeq(s, "_") {
		if part != "" {
			b.WriteString(strings.ToUpper(part[:1]) + part[1:])
		}
	}
	return b.String()
}

// jobID is the job r belongs to: the plan job its data names, else its
// correlation id, else (a command that is its own operation) its command id.
func jobID(r events.Record) string {
	var job string
	switch d := r.Data.(type) {
	case events.PlanJobStartedData:
		job = d.Job
	case events.PlanGroupStartedData:
		job = d.Job
	case events.PlanActionStartedData:
		job = d.Job
	case events.PlanActionCompletedData:
		job = d.Job
	case events.PlanSuspendedData:
		job = d.Job
	case events.PlanResumedData:
		job = d.Job
	case events.PlanJobCompletedData:
		job = d.Job
	case events.PlanJobCancelledData:
		job = d.Job
	}
	switch {
	case job != "":
		return job
	case r.Meta.CorrelationID != "":
		return r.Meta.CorrelationID
	}
	return r.Meta.CommandID
}

// jobClaims are the event types that an open job of the same aggregate
// takes as its steps when their correlation id names no job: agents report
// (initial replication done, resync done...) under their own command ids.
var jobClaims = map[events.Type][]string{
	events.InitialReplicationStarted:   {"EnableProtection"},
	events.InitialReplicationProgress:  {"EnableProtection"},
	events.InitialReplicationCompleted: {"EnableProtection"},
	events.ProtectionEnableFailed:      {"EnableProtection"},
	events.ProtectionDisabled:          {"DisableProtection"},
	events.TestFailoverCompleted:       {"TestFailover"},
	events.TestFailoverCleanedUp:       {"TestFailoverCleanup"},
	events.SourceStopped:               {"PlannedFailover", "UnplannedFailover"},
	events.FailoverCompleted:           {"PlannedFailover", "UnplannedFailover"},
	events.RecoveryPointChanged:        {"PlannedFailover", "UnplannedFailover"},
	events.ResyncProgress:              {"Resync", "ReverseReplication"},
	events.ResyncCompleted:             {"Resync"},
	events.ReverseReplicationCompleted: {"ReverseReplication"},
	events.DivergenceDetected:          {"ReverseReplication", "PlannedFailover", "UnplannedFailover"},
}

func claimedBy(r events.Record) []string {
	if d, ok := r.Data.(events.FailoverFailedData); ok {
		if d.Mode == events.FailoverTest {
			return []string{"TestFailover"}
		}
		return []string{"PlannedFailover", "UnplannedFailover"}
	}
	return jobClaims[r.Type()]
}

// openJobs are the ids of an aggregate's jobs that have not ended, oldest
// first, under bucketOpenJobs at "<kind>/<id>".
type openJobs []string

func openKey(kind, id string) string { return kind + "/" + id }

// claimingJob finds the newest open job of r's aggregate that takes r.
func (b *batch) claimingJob(r events.Record) (string, bool, error) {
	ops := claimedBy(r)
	key := openKey(string(r.Aggregate.Kind), r.Aggregate.ID)
	if len(ops) == 0 || !b.has(bucketOpenJobs, key) {
		return "", false, nil
	}
	open, err := load[openJobs](b, bucketOpenJobs, key)
	if err != nil {
		return "", false, err
	}
	for i := len(*open) - 1; i >= 0; i-- {
		job, err := load[Job](b, bucketJobs, (*open)[i])
		if err != nil {
			return "", false, err
		}
		if slices.Contains(ops, job.Operation) {
			return job.ID, true, nil
		}
	}
	return "", false, nil
}

// lane groups the operations that cannot run at once on one aggregate: a
// test failover runs beside the protection operations.
func lane(op string) string {
	if op == "TestFailover" || op == "TestFailoverCleanup" {
		return "test"
	}
	return "protection"
}

// supersede ends, as Cancelled, the open jobs of the new job's aggregate
// and lane: the state machine let a new operation start, so theirs will
// never report its end (a disable during initial replication, say).
func (b *batch) supersede(j *Job, r events.Record) error {
	key := openKey(j.TargetKind, j.Target)
	if !b.has(bucketOpenJobs, key) {
		return nil
	}
	open, err := load[openJobs](b, bucketOpenJobs, key)
	if err != nil {
		return err
	}
	keep := (*open)[:0]
	for _, id := range *open {
		old, err := load[Job](b, bucketJobs, id)
		if err != nil {
			return err
		}
		if lane(old.Operation) != lane(j.Operation) || id == j.ID {
			keep = append(keep, id)
			continue
		}
		at := r.Meta.At
		old.State, old.EndedAt = events.JobCancelled, &at
		old.Errors = append(old.Errors, fmt.Sprintf("superseded by %s job %s", j.Operation, j.ID))
	}
	*open = keep
	return nil
}

// trackOpen keeps the job in its aggregate's open jobs while it runs.
func (b *batch) trackOpen(j *Job) error {
	open, err := load[openJobs](b, bucketOpenJobs, openKey(j.TargetKind, j.Target))
	if err != nil {
		return err
	}
	i := slices.Index(*open, j.ID)
	ended := j.EndedAt != nil
	switch {
	case ended && i >= 0:
		*open = slices.Delete(*open, i, i+1)
	case !ended && i < 0:
		*open = append(*open, j.ID)
	}
	return nil
}

// applyJob creates, extends or ends the job r belongs to: the one its
// correlation id names, or the open job of its aggregate that claims it.
func (b *batch) applyJob(r events.Record) error {
	id := jobID(r)
	op, starts := startedOperation(r)
	if !starts && !b.has(bucketJobs, id) {
		var ok bool
		var err error
		if id, ok, err = b.claimingJob(r); err != nil || !ok {
			return err
		}
	}
	if id == "" {
		return nil
	}
	job, err := load[Job](b, bucketJobs, id)
	if err != nil {
		return err
	}
	own := job.ID == "" || (job.TargetKind == string(r.Aggregate.Kind) && job.Target == r.Aggregate.ID)
	switch {
	case job.ID == "":
		*job = Job{ID: id, Operation: op, TargetKind: string(r.Aggregate.Kind), Target: r.Aggregate.ID,
			State: events.JobInProgress, StartedAt: r.Meta.At, Steps: []Step{}, Errors: []string{}, Seq: r.Seq}
		if err := b.tx.Bucket(bucketJobIndex).Put(u64(r.Seq), []byte(id)); err != nil {
			return fmt.Errorf("index job %s: %w", id, err)
		}
		if err := b.supersede(job, r); err != nil {
			return err
		}
	case starts && own:
		job.State, job.EndedAt = events.JobInProgress, nil
	}
	job.addStep(r)
	if !own {
		return nil
	}
	job.settle(r)
	return b.trackOpen(job)
}

// addStep appends r as a step; a progress event replaces the progress step
// before it, so a long copy does not make a long list.
func (j *Job) addStep(r events.Record) {
	msg, failed := failure(r)
	st := Step{Seq: r.Seq, Name: string(r.Type()), Time: r.Meta.At, State: events.JobSucceeded, Detail: detail(r)}
	if failed {
		st.State, st.Detail = events.JobFailed, msg
		j.Errors = append(j.Errors, msg)
	}
	if j.EndedAt != nil && !failed {
		st.Detail = lateDetail(j, r, st.Detail)
	}
	if n := len(j.Steps); n > 0 && j.Steps[n-1].Name == st.Name && strings.HasSuffix(st.Name, "_progress") {
		j.Steps[n-1] = st
		return
	}
	j.Steps = append(j.Steps, st)
}

// settle moves the job's state for events of the job's own target.
func (j *Job) settle(r events.Record) {
	state := ""
	switch d := r.Data.(type) {
	case events.ProtectionEnableFailedData, events.FailoverFailedData:
		state = events.JobFailed
	case events.PlanSuspendedData:
		j.State = events.JobSuspended
	case events.PlanResumedData:
		j.State = events.JobInProgress
	case events.PlanJobCancelledData:
		state = events.JobCancelled
	case events.PlanJobCompletedData:
		state = planJobState(d.State)
		j.Errors = append(j.Errors, d.Errors...)
	default:
		if jobSucceeds[r.Type()] {
			state = events.JobSucceeded
		}
	}
	if state != "" {
		at := r.Meta.At
		j.State, j.EndedAt = state, &at
	}
}

func planJobState(s string) string {
	switch s {
	case events.JobSucceeded, events.JobFailed, events.JobCancelled:
		return s
	case "":
		return events.JobSucceeded
	}
	return events.JobFailed
}

// failure returns the error an event reports, if it reports one.
func failure(r events.Record) (string, bool) {
	switch d := r.Data.(type) {
	case events.ProtectionEnableFailedData:
		return d.Reason, true
	case events.FailoverFailedData:
		return fmt.Sprintf("%s failover failed at %s: %s", d.Mode, d.Step, d.Reason), true
	case events.ReplicationErrorData:
		return fmt.Sprintf("%s on %s: %s", d.Code, d.Host, d.Message), true
	case events.PlanActionCompletedData:
		if d.Error != "" {
			return fmt.Sprintf("group %d %s %s: %s", d.Group, d.Action, d.Target, d.Error), true
		}
	}
	return "", false
}

// lateDetail describes a step that came after its job ended: the source of
// a failed failover that stopped late stays stopped, and the VM goes on
// from there (docs/operations.md, "A step that answers late").
func lateDetail(j *Job, r events.Record, d string) string {
	if s, ok := r.Data.(events.SourceStoppedData); ok && j.State == events.JobFailed {
		return fmt.Sprintf("%s, after the failover failed: %s stays stopped; planned_failover again goes on from here, cancel_failover serves the VM on %s again",
			d, s.Host, s.Host)
	}
	return d
}

// detail is a short human description of a step.
func detail(r events.Record) string {
	switch d := r.Data.(type) {
	case events.InitialReplicationProgressData:
		return fmt.Sprintf("%d of %d bytes", d.DoneBytes, d.TotalBytes)
	case events.ResyncProgressData:
		return fmt.Sprintf("%d of %d bytes compared, %d sent", d.DoneBytes, d.TotalBytes, d.SentBytes)
	case events.FailoverStartedData:
		return fmt.Sprintf("%s failover %s -> %s, recovery point %q", d.Mode, d.FromHost, d.ToHost, d.RecoveryPoint)
	case events.FailoverCompletedData:
		return fmt.Sprintf("running on %s at epoch %d from %s", d.Host, d.Epoch, d.RecoveryPoint)
	case events.SourceStoppedData:
		return fmt.Sprintf("%s stopped after cycle %d", d.Host, d.FinalCycle)
	case events.RecoveryPointCreatedData:
		return d.ID
	case events.PlanGroupStartedData:
		return fmt.Sprintf("group %d", d.Group)
	case events.PlanActionStartedData:
		return fmt.Sprintf("group %d %s %s", d.Group, d.Action, d.Target)
	case events.PlanActionCompletedData:
		return fmt.Sprintf("group %d %s %s", d.Group, d.Action, d.Target)
	case events.PlanSuspendedData:
		return d.Text
	case events.PlanJobCompletedData:
		return d.State
	}
	return ""
}
