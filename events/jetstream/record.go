package jetstream

import (
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/siterecovery/siterecovery/events"
)

// decodeRecord turns one stored message into a record. A message that is not
// a valid event (a bad subject, a payload that does not decode, a payload
// whose type differs from its subject's) is a *RecordError naming seq.
func decodeRecord(seq uint64, subject string, hdr nats.Header, data []byte) (events.Record, error) {
	fail := func(err error) (events.Record, error) {
		return events.Record{}, &RecordError{Seq: seq, Subject: subject, Err: err}
	}
	agg, typ, err := events.ParseSubject(subject)
	if err != nil {
		return fail(err)
	}
	meta, d, err := events.Decode(data)
	if err != nil {
		return fail(err)
	}
	if d.EventType() != typ {
		return fail(fmt.Errorf("payload is a %s, subject says %s: %w", d.EventType(), typ, events.ErrDecode))
	}
	if typ.Kind() != agg.Kind {
		return fail(fmt.Errorf("%s is an event of kind %s, not %s: %w", typ, typ.Kind(), agg.Kind, events.ErrDecode))
	}
	return events.Record{Seq: seq, Aggregate: agg, Index: events.MsgIndex(hdr.Get(jetstream.MsgIDHeader)), Meta: meta, Data: d}, nil
}
