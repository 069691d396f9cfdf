// Package logtest is the conformance suite of events.Log: one set of tests
// that every implementation passes (events.MemLog and events/jetstream.Log),
// so that handlers and projections tested against the in-memory log behave
// the same on JetStream.
//
// Run it from an implementation's tests with a function that opens a fresh,
// empty log for each subtest (and closes it with t.Cleanup):
//
//	func TestConformance(t *testing.T) {
//		logtest.Run(t, func(t *testing.T) events.Log { return mustOpenLog(t) })
//	}
//
// It covers appends to new aggregates, stale versions, racing writers,
// retried commands, atomic multi-event appends, reading back, following the
// log live, and bad input. Every wait has a deadline (Timeout).
package logtest
