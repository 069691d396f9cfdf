// Package handlers is the control plane's command side: the NATS micro
// service "siterecovery" that turns commands into events, and forwards
// queries to the read model.
//
// A command arrives on sr.cmd.<noun>.<verb> as a JSON object whose fields
// are the CLI's flag names in snake_case. The service decodes it strictly
// (unknown fields are refused), loads the aggregates it needs from the event
// log (the source of truth, never the read model), and calls a pure decide
// function: decide(state, command) ([]events.Data, error). The VM verbs
// decide with the state machine of package events (events.VM.Check), so
// refusals name the current state and the allowed operations. The events are
// appended with optimistic concurrency on the aggregate's last sequence; a
// conflict reloads and decides again (a bounded number of times).
//
// Loads go through a fold cache (foldcache.go): each handler keeps, for the
// last 10,000 aggregates it loaded, the folded state and the sequence of the
// last event folded, and a load reads from the log only the events after it
// (events.LoadAfter) and folds them on top of a copy. The sequence an append
// carries is always the last one a load just read, so a cached state cannot
// cause a lost update: at worst a conflict, reloaded and decided again.
//
// Idempotency: every command has a command_id (generated when absent). Before
// deciding, the aggregate's marks (its events but the routine ones: recovery
// points, prunes, IR progress, agent errors, reachability, automation
// outcomes, which agents and the automation runner append under their own
// ids on paths that never check a command id) are searched for it; a
// command seen before answers its first result with duplicate set, and the
// log itself drops a re-sent message id.
//
// Rules that span aggregates hold under concurrency through claims appended
// to the claimed aggregate (host_assigned on a host: a host is in one cloud;
// cloud_paired on a cloud: a cloud is in one pairing), then the creating
// event; a failed step gives the claims back under command_id + "-undo".
// Deletes that must know who uses a thing (a policy used by a pairing, a
// pairing with protected VMs, a site with hosts) scan the log.
//
// A reply is the command's Result ({"command_id", "correlation_id", "job",
// "seq", "events", "duplicate"}) or {"error": {"code", "message"}} with the
// micro error headers set; Code maps errors to the codes of DESIGN.md
// section 4. A query on sr.q.<name> may carry after_seq: the service waits
// until the read model has applied that sequence, so a command's reply seq
// gives read-your-writes.
//
// The agent.<host>.* reports and the process managers that drive long
// operations are not here yet; VM verbs append the starting events
// (protection_enable_started, failover_started, ...).
package handlers
