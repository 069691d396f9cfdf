// Package handlers is the control plane's command side: the NATS micro
// service "siterecovery" that turns operators' commands and agents' reports
// into events, forwards queries to the read model, and the long-running
// parts that follow the log (the process manager, the plan runner, the
// automation runner, the health monitor).
//
// # Components and files
//
// Each component lives in files named after it: <component>.go holds its
// handlers (what it loads, appends and answers), <component>_decide.go its
// pure decide functions, <component>_<aspect>.go a further part of it, and
// <component>_test.go (or <component>_<aspect>_test.go) their tests.
//
//   - service: the micro service (service.go), running a command's steps,
//     sagas and results (service_exec.go), queries (service_query.go), the
//     request bodies (service_requests.go); errors.go maps errors to reply
//     codes.
//   - nats.go: the edge, the only file that talks to NATS. Components say
//     what they answer as endpoints and what they ask through small
//     interfaces declared where used (registration, sourceAgent); nats.go
//     registers the endpoints with micro, sends the replies and asks the
//     agents.
//   - fabric: sites, hosts and policies (fabric.go, fabric_decide.go).
//   - pairing: clouds, pairings and network mappings, with the claims that
//     keep a host in one cloud and a cloud in one pairing (pairing.go,
//     pairing_decide.go).
//   - vm: the VM verbs (vm.go, vm_decide.go) and vm_view.go, a VM with the
//     operation it is in, which the failover reports and the process
//     manager decide over.
//   - plan: recovery plans (plan.go, plan_decide.go).
//   - agent: the agents' replication reports and the hosts' reachability
//     (agent.go, agent_decide.go).
//   - failover: the agents' failover reports (failover.go,
//     failover_decide.go).
//   - verify: `vm verify`, asking the source agent to compare (verify.go,
//     verify_decide.go).
//   - pm: the process manager that drives failovers, timeouts and the
//     reverse replication (pm.go, pm_react.go).
//   - plan_run: the plan runner, the process manager's part that carries a
//     recovery plan through its groups (plan_run.go, plan_run_script.go).
//   - automation: the automation rules' commands (automation.go,
//     automation_decide.go) and the runner that executes them on events
//     (automation_run.go, automation_exec.go).
//   - health: the health monitor (health.go).
//   - load: the loaders (load.go) over the fold cache (load_cache.go) of the
//     folded states (load_state.go).
//
// The wire types of the agents' reports, their verbs and subjects are
// package agentproto's, shared with the agents (package hostsync).
//
// # Commands
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
// Loads go through a fold cache (load_cache.go): each handler keeps, for the
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
// micro error headers set; Code maps errors to the reply codes
// (invalid_argument, not_found, already_exists, invalid_state, conflict,
// unavailable, unauthorized). A query on sr.q.<name> may carry after_seq:
// the service waits until the read model has applied that sequence, so a
// command's reply seq gives read-your-writes.
//
// # Reports and long operations
//
// Agents report on sr.cmd.agent.<host>.<verb> (AgentHandlers,
// FailoverReports); a report is decided over the VM like a command and
// appended under the operation's job. VM verbs append the starting events
// (protection_enable_started, failover_started, ...); the agents act on
// them and report back, and the process manager (PM), following the log
// with a durable checkpoint, adds the timeouts, the reverse replication
// after a planned commit and the recovery plans (docs/architecture.md,
// "Failover").
package handlers
