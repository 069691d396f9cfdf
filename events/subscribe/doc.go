// Package subscribe lets any Go program subscribe to siterecovery's typed
// events on the SR_EVENTS stream, without the rest of the control plane.
//
// Two ways to subscribe:
//
//   - Follow reads the log in order from a sequence, filtered on event types,
//     over an ordered consumer (in memory, recreated by the client after a
//     disconnect at the next expected sequence: no gap, no repeat). It keeps
//     no state on the server; a reader that must resume after a restart
//     remembers the last Record.Seq it handled and follows from Seq + 1.
//   - OpenDurable shares a durable pull consumer between processes: each
//     event is delivered to one of them, at least once, until it is acked.
//     It is what the control plane's automation runner uses.
//
// Both decode every message with events.Decode into an events.Record: a
// message that is not a valid event is reported with a *RecordError naming
// its sequence, never skipped silently.
package subscribe
