package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/projections"
	"github.com/siterecovery/siterecovery/test/world"
)

// The demo's hosts: hv01 at site primary, hv02 at site secondary.
var demoHosts = []string{"hv01", "hv02"}

// Open starts the demo's world: the control plane on its embedded NATS
// server, with the HTTP endpoint of Config.HTTP; StartAgent runs the
// agents.
func (d *Demo) Open(ctx context.Context) error {
	w, err := world.Open(ctx, world.Config{Dir: d.cfg.Data, HTTP: d.cfg.HTTP, Logger: d.cfg.Logger,
		Agent: world.AgentOptions{HeartbeatEvery: time.Second, ResendAfter: 10 * time.Second}})
	if err != nil {
		return err
	}
	d.w = w
	return nil
}

// Close stops the agents and the control plane.
func (d *Demo) Close() error {
	if d.w == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return d.w.Close(ctx)
}

// URL is the NATS URL of the demo's control plane.
func (d *Demo) URL() string { return d.w.URL() }

// World is the demo's world.
func (d *Demo) World() *world.World { return d.w }

// StartAgent runs the agent of host with its data under the demo's dir.
func (d *Demo) StartAgent(ctx context.Context, host string) error { return d.w.StartAgent(ctx, host) }

// KillAgent stops host's agent as a crash would leave it: no more
// shipping, no goodbye, its files as they are.
func (d *Demo) KillAgent(host string) error { return d.w.StopAgent(host) }

// VM is the VM as the vm query answers it.
func (d *Demo) VM(name string) (projections.VMView, error) { return d.w.VMView(name) }

// WaitVM polls the VM until cond holds or the deadline passes; progress, if
// set, is printed on one line as it changes.
func (d *Demo) WaitVM(ctx context.Context, name, what string, within time.Duration, cond func(projections.VMView) bool, progress func(projections.VMView) string) (projections.VMView, error) {
	deadline := time.Now().Add(within)
	last := ""
	for {
		v, err := d.VM(name)
		if err == nil && cond(v) {
			if last != "" {
				d.printf("\n")
			}
			return v, nil
		}
		if err == nil && progress != nil && d.cfg.TTY {
			if p := progress(v); p != last {
				d.printf("\r  %-70s", p)
				last = p
			}
		}
		if time.Now().After(deadline) {
			return v, fmt.Errorf("%s: %s not reached within %s (state %s, err %v)", name, what, within, v.ProtectionState, err)
		}
		select {
		case <-ctx.Done():
			return v, ctx.Err()
		case <-time.After(150 * time.Millisecond):
		}
	}
}

// WaitReachable polls the hosts query until every one of hosts is
// reachable, or the deadline passes.
func (d *Demo) WaitReachable(ctx context.Context, hosts []string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		var views []projections.HostView
		err := d.w.Query("hosts", nil, &views)
		reach := map[string]events.Reachability{}
		for _, h := range views {
			reach[h.Name] = h.Reachability
		}
		missing := slices.DeleteFunc(slices.Clone(hosts), func(h string) bool { return reach[h] == events.ReachabilityReachable })
		if err == nil && len(missing) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("hosts %v not reachable within %s (reachability %v, err %v)", missing, within, reach, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// progressBar draws done/total as a bar.
func progressBar(label string, p *projections.Progress) string {
	if p == nil || p.TotalBytes == 0 {
		return label + " waiting"
	}
	const width = 30
	n := int(p.DoneBytes * width / p.TotalBytes)
	return fmt.Sprintf("%s [%s%s] %3d%% %s", label, strings.Repeat("#", n), strings.Repeat(".", width-n),
		p.DoneBytes*100/p.TotalBytes, InMiB(p.DoneBytes))
}

// InMiB writes a byte count in MiB.
func InMiB(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// startWorkloads starts a 1 MiB/s workload on every demo VM, where it
// runs now; on an error the ones started are stopped.
func (d *Demo) startWorkloads() (map[string]*world.Workload, error) {
	loads := map[string]*world.Workload{}
	for _, vm := range demoVMs {
		v, err := d.VM(vm)
		if err == nil {
			loads[vm], err = world.StartWorkload(v, 1<<20)
		}
		if err != nil {
			delete(loads, vm)
			return nil, errors.Join(err, world.StopWorkloads(loads))
		}
	}
	return loads, nil
}

// writeFor runs the workloads for dur and stops them (each with a flush).
func (d *Demo) writeFor(dur time.Duration) (map[string]*world.Workload, error) {
	loads, err := d.startWorkloads()
	if err != nil {
		return nil, err
	}
	time.Sleep(dur) // the workload's duration, not a wait for a result
	return loads, world.StopWorkloads(loads)
}

// lastSentBytes is the sent_bytes of the VM's last event of type typ (0:
// none).
func (d *Demo) lastSentBytes(vm, typ string) (int64, error) {
	var hist []struct {
		Type string          `json:"type"`
		Data json.RawMessage `json:"data"`
	}
	if err := d.w.Query("events", map[string]any{"kind": "vm", "id": vm, "limit": 10000}, &hist); err != nil {
		return 0, err
	}
	var sent int64
	for _, e := range hist {
		var b struct {
			SentBytes int64 `json:"sent_bytes"`
		}
		if e.Type == typ && json.Unmarshal(e.Data, &b) == nil {
			sent = b.SentBytes
		}
	}
	return sent, nil
}

// shippedBytes sums the bytes the VM's recovery points and initial copy
// carried, from its events.
func (d *Demo) shippedBytes(vm string) (int64, error) {
	var hist []struct {
		Type string          `json:"type"`
		Data json.RawMessage `json:"data"`
	}
	if err := d.w.Query("events", map[string]any{"kind": "vm", "id": vm, "limit": 10000}, &hist); err != nil {
		return 0, err
	}
	var total int64
	for _, e := range hist {
		var b struct {
			Bytes     int64 `json:"bytes"`
			SentBytes int64 `json:"sent_bytes"`
		}
		if err := json.Unmarshal(e.Data, &b); err == nil {
			total += b.Bytes + b.SentBytes
		}
	}
	return total, nil
}
