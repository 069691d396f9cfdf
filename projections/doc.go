// Package projections keeps the read models of siterecovery: sites, hosts,
// clouds, policies, pairings, network mappings, VMs, recovery plans and jobs,
// in one bbolt file (<data>/projections.db), fed by the event log.
//
// A Store runs one goroutine, the runner, that follows events.Log from its
// checkpoint + 1 and applies the events in log order. Each batch of events
// (up to 4096, as many as the log has ready) is applied in one bbolt
// transaction that also writes the checkpoint, the sequence of the batch's
// last event: a crash at any instant leaves the read models exactly at the
// checkpoint, so no event is applied twice or skipped. An event whose
// sequence is not checkpoint + 1 stops the runner with ErrOutOfOrder; an
// event that does not decode stops it too, and Err reports why. Errors of
// the log connection are retried with backoff. Deleting the file rebuilds
// every read model from the log; a file whose checkpoint is beyond the end
// of the log (built from another log) stops the runner with ErrAhead.
//
// The VM read model folds the VM with events.VM.Apply, the one state machine
// of the project, and adds what only a reader needs (progress, issues, disk
// images); allowed_operations comes from events.VM.Allowed. Recovery points,
// the most frequent event, are stored one per key beside their VM in a
// compact binary form, so a new point costs one small write however many
// the VM keeps; Apply still decides which points exist (points.go).
//
// A job is one operation, as ASR's jobs view shows it: the event that starts
// it creates it under the event's correlation id, and every later event with
// that correlation id adds a step and may end it. Agents report under their
// own command ids, so an event whose correlation id names no job is taken
// by the newest open job of its aggregate that expects that event type
// (initial_replication_completed by EnableProtection, ...); a new operation
// ends the open jobs it supersedes as Cancelled.
//
// The status query's counts of VMs (total, by protection state, by health)
// and of jobs (by state) are kept in the counts bucket by the batch that
// changes them, in its transaction: flush adds, for each VM and job it
// writes, its tally now less its tally when the batch first loaded it
// (counts.go). status reads them, and the sites and hosts, instead of
// every VM and job: its cost does not grow with the VMs. A host's
// reachable flag is the one of its last host_reachable/host_unreachable
// event (the agents' sweep appends those), so counting hosts needs no
// clock. A file without the counts bucket (written before it existed)
// gets it at open, counted from its read models.
//
// Query answers the queries of the micro service (sr.q.<name>) with values
// that marshal to the JSON of the contract; WaitFor lets a caller read its
// own writes: wait for the sequence its command appended, then query.
package projections
