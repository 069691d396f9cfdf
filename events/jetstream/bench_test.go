package jetstream_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	njs "github.com/nats-io/nats.go/jetstream"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/jetstream"
	"github.com/siterecovery/siterecovery/events/jetstream/jstest"
)

// benchConcurrency is the number of writers of the concurrent cases.
const benchConcurrency = 8

// rawSamples is how many raw publishes measure the baseline of a case.
const rawSamples = 400

// BenchmarkAppend measures Append (one-event and five-event commits, each
// to a fresh aggregate, sequentially and with benchConcurrency writers)
// against raw js.Publish of an event-sized payload to a stream with the same
// settings on the same server (SyncAlways). Each case measures its raw
// baseline first, in the same run, and reports events/s, raw_events/s and
// ratio_vs_raw.
//
// A five-event commit is an atomic batch; on an R1 file stream the server
// stages every atomic batch in its own on-disk store (created, synced and
// removed per batch), which costs several fsyncs more than five plain
// publishes: that, not the client, bounds its ratio.
func BenchmarkAppend(b *testing.B) {
	s := jstest.MustRunServer(b)
	nc := jstest.MustConnect(b, s.ClientURL())
	l, err := jetstream.Open(context.Background(), nc, jetstream.Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	js, err := njs.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	raw := newRawPublisher(b, js)

	b.Run("raw-publish", func(b *testing.B) {
		start := time.Now()
		for i := 0; b.Loop(); i++ {
			raw.publish(b, i)
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
	})
	var run atomic.Int64
	for _, n := range []int{1, 5} {
		for _, conc := range []int{1, benchConcurrency} {
			name := fmt.Sprintf("%s-event/writers=%d", map[int]string{1: "one", 5: "five"}[n], conc)
			b.Run(name, func(b *testing.B) {
				prefix := fmt.Sprintf("r%d", run.Add(1))
				benchAppend(b, l, raw, prefix, n, conc)
			})
		}
	}
}

func benchAppend(b *testing.B, l *jetstream.Log, raw *rawPublisher, prefix string, n, conc int) {
	rawRate := raw.rate(b, conc)
	evs := make([]events.Data, n)
	for i := range evs {
		evs[i] = events.HealthChangedData{Health: events.HealthWarning, Issues: []string{"rpo above threshold"}}
	}
	var next atomic.Int64
	var ops atomic.Int64
	b.ResetTimer()
	start := time.Now()
	parallel(b.N, conc, func() {
		i := next.Add(1)
		id := fmt.Sprintf("%s-%d", prefix, i)
		meta := events.Meta{CommandID: id, Actor: "bench"}
		if _, err := l.Append(context.Background(), events.VMAgg(id), 0, meta, evs...); err != nil {
			b.Error(err)
		}
		ops.Add(1)
	})
	rate := float64(ops.Load()*int64(n)) / time.Since(start).Seconds()
	b.ReportMetric(rate, "events/s")
	b.ReportMetric(rawRate, "raw_events/s")
	b.ReportMetric(rate/rawRate, "ratio_vs_raw")
}

// parallel runs fn total times over conc goroutines.
func parallel(total, conc int, fn func()) {
	var wg sync.WaitGroup
	var left atomic.Int64
	left.Store(int64(total))
	for range conc {
		wg.Go(func() {
			for left.Add(-1) >= 0 {
				fn()
			}
		})
	}
	wg.Wait()
}

// rawPublisher publishes event-sized payloads with plain js.Publish to a
// stream configured as SR_EVENTS but on other subjects.
type rawPublisher struct {
	js      njs.JetStream
	payload []byte
	seq     atomic.Int64
}

func newRawPublisher(b *testing.B, js njs.JetStream) *rawPublisher {
	_, err := js.CreateStream(context.Background(), njs.StreamConfig{
		Name: "RAW", Subjects: []string{"raw.>"}, Storage: njs.FileStorage, Discard: njs.DiscardNew,
		MaxBytes: -1, MaxMsgs: -1, DenyDelete: true, DenyPurge: true, AllowDirect: true,
		AllowAtomicPublish: true, Duplicates: jetstream.DuplicateWindow, Replicas: 1,
	})
	if err != nil {
		b.Fatal(err)
	}
	payload, err := events.Encode(events.Meta{CommandID: "bench-0000000001", Actor: "bench"},
		events.HealthChangedData{Health: events.HealthWarning, Issues: []string{"rpo above threshold"}})
	if err != nil {
		b.Fatal(err)
	}
	return &rawPublisher{js: js, payload: payload}
}

func (r *rawPublisher) publish(b *testing.B, i int) {
	if _, err := r.js.Publish(context.Background(), fmt.Sprintf("raw.vm.b%d.health_changed", i), r.payload); err != nil {
		b.Error(err)
	}
}

// rate measures raw events/s with conc publishers.
func (r *rawPublisher) rate(b *testing.B, conc int) float64 {
	start := time.Now()
	parallel(rawSamples, conc, func() { r.publish(b, int(r.seq.Add(1))) })
	return rawSamples / time.Since(start).Seconds()
}
