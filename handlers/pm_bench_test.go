package handlers

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/agentproto"
)

// playAgents answers every planned failover at once, as the source and
// recovery agents would (hv01 stops the VM, hv11 serves it), from the
// failover_started events on the log's subjects. It runs until the test ends.
func (f *pmFixture) playAgents() {
	f.t.Helper()
	nc, err := nats.Connect(f.url)
	require.NoError(f.t, err)
	f.t.Cleanup(nc.Close)
	sub, err := nc.Subscribe("sr.evt.vm.*.failover_started", func(msg *nats.Msg) {
		agg, _, err := events.ParseSubject(msg.Subject)
		if err != nil {
			return
		}
		go f.answerFailover(nc, agg.ID)
	})
	require.NoError(f.t, err)
	f.t.Cleanup(func() { _ = sub.Unsubscribe() })
}

// answerFailover reports as both agents, retrying (as agents do) until
// each report is accepted: the log may not show the failover to Load yet.
func (f *pmFixture) answerFailover(nc *nats.Conn, vm string) {
	for _, step := range []func(v vmView) (string, string, m){
		func(v vmView) (string, string, m) {
			return "hv01", agentproto.VerbVMStopped, m{"vm": vm, "epoch": v.Failover.StartEpoch, "final_cycle": 1}
		},
		func(v vmView) (string, string, m) {
			return "hv11", agentproto.VerbFailoverReady, m{"vm": vm, "epoch": v.Failover.StartEpoch + 1, "recovery_point": "rp-final", "disks": disks(vm, "hv11", "")}
		},
	} {
		var last string
		for try := 0; ; try++ {
			recs, err := f.log.Load(context.Background(), events.VMAgg(vm))
			if err != nil {
				return // the test ended
			}
			host, verb, body := step(foldView(recs))
			raw, _ := json.Marshal(body)
			msg, err := nc.Request(agentproto.ReportSubject(host, verb), raw, 10*time.Second)
			if err == nil && msg.Header.Get(micro.ErrorCodeHeader) == "" {
				break
			}
			if err == nil {
				last = string(msg.Data)
			}
			if try == 200 {
				f.t.Errorf("%s %s of %s never accepted: %v %s", host, verb, vm, err, last)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// BenchmarkPlannedFailover measures one VM's planned failover through the
// control plane (command, process manager, both agents' reports played at
// once) from the command to the VM serving at the recovery site; each
// iteration cancels it again.
func BenchmarkPlannedFailover(b *testing.B) {
	f := mustStartPM(b, PMConfig{})
	f.buildFabric()
	f.protect("web01")
	f.playAgents()
	var total time.Duration
	for b.Loop() {
		start := time.Now()
		f.ok("sr.cmd.vm.planned_failover", m{"vm": "web01"})
		f.waitVM("web01", "serving", func(v vmView) bool { return v.State == events.FailoverCommitPending })
		total += time.Since(start)
		f.ok("sr.cmd.vm.cancel_failover", m{"vm": "web01"})
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/failover")
}

// BenchmarkPlanPlannedFailover50 measures a plan of 50 VMs in 5 groups
// from the command to every VM serving at the recovery site.
func BenchmarkPlanPlannedFailover50(b *testing.B) {
	f := mustStartPM(b, PMConfig{})
	f.jobWait = 2 * time.Minute
	f.buildFabric()
	var groups []m
	var vms []string
	for g := range 5 {
		var names []string
		for i := range 10 {
			name := fmt.Sprintf("vm%d%d", g, i)
			f.ok("sr.cmd.vm.create", m{"name": name, "host": "hv01", "disk": []string{"1MiB"}})
			f.protect(name)
			names = append(names, name)
		}
		groups = append(groups, m{"vms": names})
		vms = append(vms, names...)
	}
	f.ok("sr.cmd.plan.create", m{"name": "big", "groups": groups})
	f.playAgents()
	var total time.Duration
	for b.Loop() {
		start := time.Now()
		res := f.ok("sr.cmd.plan.planned_failover", m{"plan": "big"})
		f.job(res.Job, events.JobSucceeded)
		total += time.Since(start)
		for _, vm := range vms {
			f.ok("sr.cmd.vm.cancel_failover", m{"vm": vm})
		}
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/plan")
}
