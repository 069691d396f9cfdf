// Package agentproto is the wire protocol between the host agents
// (hostsync) and the control plane (handlers): the reports an agent sends
// and the replies it gets, the requests the control plane sends an agent,
// the subjects of both and of the data path between agents, and the rules of
// the wire both sides apply (how long a verify waits).
//
// Every message is one Go type here, imported by both sides, so a renamed
// or retyped field breaks the build instead of the protocol. The JSON field
// names are the contract (docs/architecture.md, "Failover"): they never
// change; a new field is optional (omitempty on the sender, zero meaning
// absent on the receiver).
//
// The agent's reports are requests on sr.cmd.agent.<host>.<verb>
// (ReportSubject), JSON in and JSON out: a Reply with the log sequences the
// report appended, or a refusal {"error": {"code", "message"}}. The
// reporting host is the subject's <host> token, never a body field: a
// host's NATS user may publish only under its own sr.cmd.agent.<host>.>.
// Every report may carry a command_id: a retried report with the same id
// appends nothing twice. The replication reports (ReplicationVerbs) keep a
// VM's protection going; the failover reports (FailoverVerbs) each carry a
// ReportHead with the epoch the agent acted at and the operation's job.
//
// The control plane asks a VM's source agent to verify on
// sr.agent.<host>.verify.<vm> (VerifyRequest, VerifyReply). Between agents,
// a cycle's batches travel on DeltaSubject in the stream DeltaStream of the
// target site, the recovery host acknowledges applied cycles on
// AckSubject, and answers hash tree leaves on LeavesSubject.
//
// The package imports events (the domain) and nothing else of the project,
// and nothing of NATS: it names subjects, it does not send on them.
package agentproto
