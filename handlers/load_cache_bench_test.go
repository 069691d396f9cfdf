package handlers

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/agentproto"
	"github.com/siterecovery/siterecovery/events/jetstream"
	"github.com/siterecovery/siterecovery/events/jetstream/jstest"
)

// longHistoryPoints is how many recovery points the benchmark VM has had:
// a month of protection at one point every two minutes, or a day at 5 s.
const longHistoryPoints = 20_000

// BenchmarkLoadVMLongHistory measures an agent's recovery point report
// (load the VM, decide, append: the commonest command there is) on a VM
// whose log holds longHistoryPoints recovery points (and the prunes that
// keep 100 of them), on the JetStream log of a real embedded server. ns/op
// is the report through the handlers' fold cache, warm (the load reads only
// what was appended since); full_ns/op is the same report with a cold cache,
// which reads and folds the whole history as every load did before the
// cache; ratio is full/cached.
func BenchmarkLoadVMLongHistory(b *testing.B) {
	ctx := context.Background()
	srv := jstest.MustRunServer(b)
	nc := jstest.MustConnect(b, jstest.URL(srv))
	jl, err := jetstream.Open(ctx, nc, jetstream.Config{Logger: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { jl.Close() })
	const vm = "longvm"
	cycle := seedLongHistory(b, jl, vm)

	report := func(a *AgentHandlers) {
		cycle++
		body, _ := json.Marshal(agentproto.RecoveryPointReport{VM: vm, ID: fmt.Sprintf("rp%d", cycle), Time: time.Unix(int64(cycle), 0),
			Cycle: cycle, Epoch: 1, Bytes: 1, CommandID: fmt.Sprintf("point-%d", cycle)})
		res, err := a.handleVM(ctx, "hv02", agentproto.VerbRecoveryPoint, body)
		if err != nil || len(res.Seqs) == 0 {
			b.Fatalf("recovery point report: %v (%v)", err, res)
		}
	}
	fullRuns := 5
	fullStart := time.Now()
	for range fullRuns {
		report(NewAgentHandlers(jl, time.Hour, zerolog.Nop())) // a new, empty cache
	}
	full := time.Since(fullStart) / time.Duration(fullRuns)

	warm := NewAgentHandlers(jl, time.Hour, zerolog.Nop())
	report(warm)
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		report(warm)
	}
	cached := time.Since(start) / time.Duration(b.N)
	b.StopTimer()
	b.ReportMetric(float64(full.Nanoseconds()), "full_ns/op")
	b.ReportMetric(float64(full)/float64(cached), "ratio")
}

// seedLongHistory creates vm, protects it (recovery host hv02) and appends
// longHistoryPoints recovery points in batches, pruning all but the last
// 100 after each batch. It returns the last cycle.
func seedLongHistory(b *testing.B, l events.Log, vm string) uint64 {
	b.Helper()
	ctx := context.Background()
	agg := events.VMAgg(vm)
	res, err := l.Append(ctx, agg, 0, events.Meta{CommandID: "seed"},
		events.VMCreatedData{Name: vm, Host: "hv01", Site: "primary", Cloud: "gold", Disks: []events.DiskSpec{{Name: "disk0", Size: 1 << 30}}},
		events.ProtectionEnableStartedData{Pairing: "p", Policy: "pol", SourceHost: "hv01", SourceSite: "primary",
			RecoveryHost: "hv02", TargetSite: "dr", TargetCloud: "silver"},
		events.InitialReplicationStartedData{TotalBytes: 1 << 30}, events.InitialReplicationCompletedData{SentBytes: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	last := res.Last()
	const batch = 500
	var cycle uint64
	for n := 0; n < longHistoryPoints; n += batch {
		evs := make([]events.Data, 0, batch+1)
		var pruned []string
		for range batch {
			cycle++
			id := fmt.Sprintf("rp%d", cycle)
			evs = append(evs, events.RecoveryPointCreatedData{ID: id, Time: time.Unix(int64(cycle), 0).UTC(), Cycle: cycle, Epoch: 1,
				Roots: map[string]string{"disk0": "root-" + id}, Bytes: 1 << 20})
			if cycle > 100 {
				pruned = append(pruned, fmt.Sprintf("rp%d", cycle-100))
			}
		}
		evs = append(evs, events.RecoveryPointsPrunedData{IDs: pruned})
		res, err := l.Append(ctx, agg, last, events.Meta{CommandID: fmt.Sprintf("seed-%d", n), Actor: "agent:hv02"}, evs...)
		if err != nil {
			b.Fatal(err)
		}
		last = res.Last()
	}
	return cycle
}
