// Package jetstream is the event log of siterecovery on NATS JetStream: the
// product implementation of events.Log, and the embedded nats-server that
// `siterecovery serve`, the demo and the tests run.
//
// The log is the stream SR_EVENTS (docs/reference/subjects.md): subjects sr.evt.>,
// file storage, no delete, no purge, no limits with discard new, direct
// gets, atomic batch publish, a two-minute duplicate window, one replica on
// a single server and three in a cluster. Open creates it, or checks an
// existing one and refuses (ErrWeakStream, changing nothing) when it is
// weaker than that. Run the server with SyncAlways so that an acknowledged
// event survives power loss.
//
// Append writes one message per event on sr.evt.<kind>.<id>.<type>, a plain
// publish for one event and an atomic batch for several. The first message
// carries the sequence of the aggregate's last event, which the server
// checks against sr.evt.<kind>.<id>.> (optimistic concurrency); each carries
// its events.MsgID as Nats-Msg-Id. A retried command is recognised whichever
// way the server reports it (a duplicate, or a wrong last sequence when the
// sequence check runs first): on any conflict Append reads the aggregate and
// returns the original sequences with Duplicate set when the command's
// events are there, so a retry never appends twice on a single server or a
// cluster, even after the duplicate window.
//
// Load reads one aggregate with direct batch gets filtered on its subjects
// (one round trip per 512 events, no consumer). On a replicated stream a
// direct get may be answered by a replica a moment behind the leader, so
// Load first asks the leader for the aggregate's last sequence and reads
// until it has it: a load sees every append acknowledged before it began.
// Follow reads the whole log with an ordered consumer. A stored message that
// is not a valid event (someone published on sr.evt.> by hand) is never
// skipped silently: Load fails and a cursor stops at it, both with a
// *RecordError naming its sequence.
//
// In a cluster, an append racing another on the same aggregate is refused
// while the other is in flight, and a reload may still show the old version
// until the winner is applied: handlers retry conflicts with a short
// backoff.
package jetstream
