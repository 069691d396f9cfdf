// Package events is the domain of siterecovery: the event catalog, the
// envelope and its codec, the aggregates' state folds, the VM state machine
// and the Log interface that stores events.
//
// Everything else in the project imports this package and this package imports
// nothing of the project. A command handler loads an aggregate's history with
// Log.Load, folds it into state (VM.Apply, Site.Apply, ...), decides with the
// state machine (VM.Check refuses an operation the state does not allow,
// VM.Allowed lists those it does, out of VMOperations) and appends the
// resulting events
// with Log.Append, which enforces optimistic concurrency per aggregate and
// idempotency per command id. Projections follow the whole log with
// Log.Follow.
//
// Events are typed: every event type is a constant (Type) and a data struct
// that implements Data. Decoding is an explicit switch on the type name in
// codec.go; a change of an event's shape is a new version with an upcaster,
// and golden files under testdata keep every version decodable. The catalog
// as a client sees it (subjects, envelope, every type's data and version)
// is docs/reference/events.md; a test holds it to the constants here.
//
// Two implementations of Log exist: MemLog in this package (for unit tests)
// and events/jetstream (the product, on the SR_EVENTS stream). The
// conformance suite in events/logtest runs against both.
package events
