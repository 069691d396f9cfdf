package subscribe

import (
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/siterecovery/siterecovery/events"
	sjs "github.com/siterecovery/siterecovery/events/jetstream"
)

// DefaultStream is the event stream subscribed to when none is named.
const DefaultStream = sjs.DefaultStream

// filters are the subject filters of types: every event when types is
// empty, else sr.evt.<kind>.*.<type> per type. Unknown types are refused.
func filters(types []events.Type) ([]string, error) {
	if len(types) == 0 {
		return []string{events.SubjectPrefix + ".>"}, nil
	}
	out := make([]string, 0, len(types))
	seen := map[events.Type]bool{}
	for _, t := range types {
		if !t.Known() {
			return nil, fmt.Errorf("subscribe to %q: %w", t, events.ErrUnknownType)
		}
		if !seen[t] {
			seen[t] = true
			out = append(out, fmt.Sprintf("%s.%s.*.%s", events.SubjectPrefix, t.Kind(), t))
		}
	}
	return out, nil
}

// decode turns a delivered message into a record, or a *RecordError.
func decode(m jetstream.Msg) (events.Record, error) {
	md, err := m.Metadata()
	if err != nil {
		return events.Record{}, &RecordError{Subject: m.Subject(), Err: err}
	}
	seq := md.Sequence.Stream
	fail := func(err error) (events.Record, error) {
		return events.Record{}, &RecordError{Seq: seq, Subject: m.Subject(), Err: err}
	}
	agg, typ, err := events.ParseSubject(m.Subject())
	if err != nil {
		return fail(err)
	}
	meta, d, err := events.Decode(m.Data())
	if err != nil {
		return fail(err)
	}
	if d.EventType() != typ || typ.Kind() != agg.Kind {
		return fail(fmt.Errorf("payload is a %s of kind %s, subject says %s: %w", d.EventType(), typ.Kind(), m.Subject(), events.ErrDecode))
	}
	return events.Record{Seq: seq, Aggregate: agg, Index: events.MsgIndex(m.Headers().Get(jetstream.MsgIDHeader)), Meta: meta, Data: d}, nil
}
