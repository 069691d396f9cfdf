package handlers

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/siterecovery/siterecovery/events/jetstream/jstest"
)

// BenchmarkCommandRoundTrip measures commands per second through the micro
// service (request → decide → append → reply, one at a time; site register
// with unique names) against a raw NATS request-reply echo responder on the
// same server in the same run, and reports their ratio. It runs over the
// JetStream log (the product: every append is fsynced) and over MemLog (the
// service's own cost).
func BenchmarkCommandRoundTrip(b *testing.B) {
	for _, mem := range []bool{false, true} {
		name := "jetstream"
		if mem {
			name = "memlog"
		}
		b.Run(name, func(b *testing.B) {
			f := mustStart(b, mem)
			echo := jstest.MustConnect(b, f.url)
			sub, err := echo.Subscribe("bench.echo", func(m *nats.Msg) { _ = m.Respond(m.Data) })
			if err != nil {
				b.Fatal(err)
			}
			defer sub.Unsubscribe()
			if err := echo.Flush(); err != nil {
				b.Fatal(err)
			}
			bodies := make([][]byte, b.N)
			for i := range bodies {
				bodies[i] = fmt.Appendf(nil, `{"name":"site-%07d"}`, i)
			}
			rawStart := time.Now()
			for i := range b.N {
				if _, err := f.nc.Request("bench.echo", bodies[i], 5*time.Second); err != nil {
					b.Fatal(err)
				}
			}
			raw := time.Since(rawStart)

			b.ResetTimer()
			cmdStart := time.Now()
			for i := range b.N {
				msg, err := f.nc.Request("sr.cmd.site.register", bodies[i], 10*time.Second)
				if err != nil {
					b.Fatal(err)
				}
				if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
					b.Fatalf("site register: %s: %s", code, msg.Header.Get(micro.ErrorHeader))
				}
			}
			cmd := time.Since(cmdStart)
			b.StopTimer()
			cmdRate := float64(b.N) / cmd.Seconds()
			rawRate := float64(b.N) / raw.Seconds()
			b.ReportMetric(cmdRate, "cmds/s")
			b.ReportMetric(rawRate, "raw_req/s")
			b.ReportMetric(cmdRate/rawRate, "ratio")
		})
	}
}
