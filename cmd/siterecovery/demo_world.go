package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/siterecovery/siterecovery/cmd/siterecovery/controlplane"
	"github.com/siterecovery/siterecovery/events/jetstream"
	"github.com/siterecovery/siterecovery/hostsync"
	"github.com/siterecovery/siterecovery/projections"
)

// demoAgent is one host agent of the demo, in process, with its own NATS
// connection as a real agent has.
type demoAgent struct {
	agent *hostsync.Agent
	nc    *nats.Conn
	log   *jetstream.Log
}

// startAgent runs the agent of host with its data under the demo's dir.
func (d *demo) startAgent(ctx context.Context, host string) error {
	nc, err := controlplane.Connect(d.url, "siterecovery-agent-"+host, d.logger)
	if err != nil {
		return err
	}
	log, err := jetstream.Open(ctx, nc, jetstream.Config{Logger: d.logger})
	if err != nil {
		nc.Close()
		return fmt.Errorf("agent %s: event log: %w", host, err)
	}
	a, err := hostsync.NewAgent(hostsync.AgentConfig{
		Host: host, DataDir: filepath.Join(d.cfg.Data, "hosts", host), NATS: nc, Log: log,
		Logger: d.logger, HeartbeatEvery: time.Second, ResendAfter: 10 * time.Second,
	})
	if err == nil {
		err = a.Open(ctx)
	}
	if err != nil {
		return errors.Join(fmt.Errorf("agent %s: %w", host, err), log.Close(), nc.Drain())
	}
	d.agents[host] = &demoAgent{agent: a, nc: nc, log: log}
	return nil
}

// stopAgent stops host's agent (abrupt says the host died: no goodbye).
func (d *demo) stopAgent(host string) error {
	a, ok := d.agents[host]
	if !ok {
		return nil
	}
	delete(d.agents, host)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return errors.Join(a.agent.Close(ctx), a.log.Close(), a.nc.Drain())
}

// killAgent stops host's agent as a crash would leave it: no more shipping,
// no goodbye, its files as they are.
func (d *demo) killAgent(host string) error {
	return d.stopAgent(host)
}

func (d *demo) stopAgents() error {
	var errs []error
	for host := range d.agents {
		errs = append(errs, d.stopAgent(host))
	}
	return errors.Join(errs...)
}

// query asks the control plane's read models, as any NATS client can.
func (d *demo) query(name string, params map[string]any, out any) error {
	body, err := json.Marshal(params)
	if err != nil {
		return err
	}
	msg, err := d.cp.Conn().Request("sr.q."+name, body, 10*time.Second)
	if err != nil {
		return fmt.Errorf("query %s: %w", name, err)
	}
	if code := msg.Header.Get("Nats-Service-Error-Code"); code != "" {
		return fmt.Errorf("query %s: %s: %s", name, code, msg.Header.Get("Nats-Service-Error"))
	}
	return json.Unmarshal(msg.Data, out)
}

func (d *demo) vm(name string) (projections.VMView, error) {
	var v projections.VMView
	err := d.query("vm", map[string]any{"vm": name}, &v)
	return v, err
}

// waitVM polls the VM until cond holds or the deadline passes; progress, if
// set, is printed on one line as it changes.
func (d *demo) waitVM(ctx context.Context, name, what string, within time.Duration, cond func(projections.VMView) bool, progress func(projections.VMView) string) (projections.VMView, error) {
	deadline := time.Now().Add(within)
	last := ""
	for {
		v, err := d.vm(name)
		if err == nil && cond(v) {
			if last != "" {
				d.printf("\n")
			}
			return v, nil
		}
		if err == nil && progress != nil && d.tty {
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

// progressBar draws done/total as a bar.
func progressBar(label string, p *projections.Progress) string {
	if p == nil || p.TotalBytes == 0 {
		return label + " waiting"
	}
	const width = 30
	n := int(p.DoneBytes * width / p.TotalBytes)
	return fmt.Sprintf("%s [%s%s] %3d%% %s", label, strings.Repeat("#", n), strings.Repeat(".", width-n),
		p.DoneBytes*100/p.TotalBytes, inMiB(p.DoneBytes))
}

func inMiB(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// nbdTarget splits an nbd+unix URL into socket and export.
func nbdTarget(raw string) (socket, export string, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", err
	}
	socket = u.Query().Get("socket")
	if u.Scheme != "nbd+unix" || socket == "" {
		return "", "", fmt.Errorf("%q is not an nbd+unix URL with a socket", raw)
	}
	return socket, strings.TrimPrefix(u.Path, "/"), nil
}

// workload writes random blocks through a VM disk's NBD export, as a guest
// would, until stopped; Stop flushes and reports what it wrote.
type workload struct {
	vm      string
	client  *hostsync.NBDClient
	rate    int64 // bytes per second
	stop    chan struct{}
	done    chan error
	written int64
}

func (d *demo) startWorkload(v projections.VMView, rate int64) (*workload, error) {
	if len(v.Disks) == 0 || v.Disks[0].NBDURL == "" {
		return nil, fmt.Errorf("%s: no NBD export yet", v.Name)
	}
	socket, export, err := nbdTarget(v.Disks[0].NBDURL)
	if err != nil {
		return nil, err
	}
	c, err := hostsync.DialNBD("unix", socket, export)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", v.Name, err)
	}
	w := &workload{vm: v.Name, client: c, rate: rate, stop: make(chan struct{}), done: make(chan error, 1)}
	go func() { w.done <- w.run() }()
	return w, nil
}

func (w *workload) run() error {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	block := make([]byte, 64<<10)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	perTick := w.rate / 20
	blocks := w.client.Size() / int64(len(block))
	for {
		select {
		case <-w.stop:
			return w.client.Flush()
		case <-tick.C:
		}
		for n := int64(0); n < perTick; n += int64(len(block)) {
			for i := range block {
				block[i] = byte(rng.Uint32())
			}
			if err := w.client.WriteAt(block, rng.Int64N(blocks)*int64(len(block)), false); err != nil {
				return fmt.Errorf("%s: %w", w.vm, err)
			}
			w.written += int64(len(block))
		}
	}
}

// startWorkloads starts a 1 MiB/s workload on every demo VM, where it
// runs now; on an error the ones started are stopped.
func (d *demo) startWorkloads() (map[string]*workload, error) {
	loads := map[string]*workload{}
	for _, vm := range demoVMs {
		v, err := d.vm(vm)
		if err == nil {
			loads[vm], err = d.startWorkload(v, 1<<20)
		}
		if err != nil {
			delete(loads, vm)
			return nil, errors.Join(err, stopWorkloads(loads))
		}
	}
	return loads, nil
}

// writeFor runs the workloads for dur and stops them (each with a flush).
func (d *demo) writeFor(dur time.Duration) (map[string]*workload, error) {
	loads, err := d.startWorkloads()
	if err != nil {
		return nil, err
	}
	time.Sleep(dur) // the workload's duration, not a wait for a result
	return loads, stopWorkloads(loads)
}

// stopWorkloads stops every workload and joins their errors.
func stopWorkloads(loads map[string]*workload) error {
	var errs []error
	for _, w := range loads {
		errs = append(errs, w.Stop())
	}
	return errors.Join(errs...)
}

// Stop ends the writes with a flush and closes the connection.
func (w *workload) Stop() error {
	close(w.stop)
	err := <-w.done
	return errors.Join(err, w.client.Close())
}

// sameBytes compares two image files.
func sameBytes(a, b string) (bool, error) {
	fa, err := os.Open(a)
	if err != nil {
		return false, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return false, err
	}
	defer fb.Close()
	ba, bb := make([]byte, 1<<20), make([]byte, 1<<20)
	for {
		na, errA := io.ReadFull(fa, ba)
		nb, errB := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false, nil
		}
		if errA != nil || errB != nil {
			return errors.Is(errA, io.ErrUnexpectedEOF) || errors.Is(errA, io.EOF), nil
		}
	}
}

// shippedBytes sums the bytes the VM's recovery points and initial copy
// carried, from its events.
func (d *demo) shippedBytes(vm string) (int64, error) {
	var hist []struct {
		Type string          `json:"type"`
		Data json.RawMessage `json:"data"`
	}
	if err := d.query("events", map[string]any{"kind": "vm", "id": vm, "limit": 10000}, &hist); err != nil {
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

// parallel runs fn for every name at once and joins the errors.
func parallel(names []string, fn func(string) error) error {
	var wg sync.WaitGroup
	errs := make([]error, len(names))
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(n)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
