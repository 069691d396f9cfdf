package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/siterecovery/siterecovery/projections"
	"github.com/siterecovery/siterecovery/test/world"
)

// Config is the configuration of the demo.
type Config struct {
	// Keep leaves the control plane running at the end, until ctx ends.
	Keep bool
	// Data is the data directory ("": a new temporary directory, removed
	// at the end unless Keep).
	Data string
	// HTTP is the address of the HTTP endpoint ("": none).
	HTTP string
	// Logger is the components' logger (the control plane's and the
	// agents'), used as given by Open.
	Logger zerolog.Logger
	// LogTo, when set, makes Run's components log to the demo's log file
	// (LogFile in the data directory) through the logger it returns, so
	// that out carries the narrative alone; package main configures it.
	LogTo func(w io.Writer) zerolog.Logger
	// CLI runs the operator commands: package main's, so the demo shows
	// and checks them as an operator types them.
	CLI CLI
	// TTY redraws progress lines in place; otherwise each result is a
	// line.
	TTY bool
}

// CLI runs one operator command (`siterecovery <noun> <verb> ...`) and
// returns its exit status: 0 success, 1 refused, 2 bad usage.
type CLI func(args []string, stdout, stderr io.Writer) int

// Demo runs the real system, both sites, in one process: an embedded NATS
// server with JetStream, the control plane, the agents of hv01 and hv02
// and the operator commands, and checks what each step should have done.
// The soak runs its world and its checks too.
type Demo struct {
	cfg   Config
	out   io.Writer
	w     *world.World
	start time.Time
	outMu sync.Mutex
	// logged says the components log to the log file (logs.go).
	logged bool
}

// demoVMs are the demo's VMs, all on hv01 at the start.
var demoVMs = []string{"web01", "web02", "db01"}

// New is a demo writing its steps to out; Run runs it, or Open and the
// steps' methods run parts of it.
func New(cfg Config, out io.Writer) *Demo {
	return &Demo{cfg: cfg, out: out, start: time.Now()}
}

// Run runs the demo and prints its verdict: nil when every step verified
// what it did. The components log to the demo's log file (Config.LogTo),
// whose path it prints at the start and at the end; a temporary data
// directory is removed at the end but for that file (and kept whole when
// the demo failed).
func Run(ctx context.Context, cfg Config, out io.Writer) error {
	d := New(cfg, out)
	tmp := cfg.Data == ""
	if tmp {
		dir, err := os.MkdirTemp("", "siterecovery-demo-")
		if err != nil {
			return err
		}
		d.cfg.Data = dir
	}
	err := d.runLogged(ctx)
	if err != nil {
		fmt.Fprintf(out, "\nFAILED: %v\n", err)
	} else {
		fmt.Fprintf(out, "\ndemo verified in %s\n", time.Since(d.start).Round(time.Millisecond))
	}
	d.endLog(err)
	if tmp && !cfg.Keep && err == nil {
		if rmErr := removeAllBut(d.cfg.Data, LogFile); rmErr != nil {
			fmt.Fprintf(out, "remove the demo's data: %v\n", rmErr)
		}
	}
	return err
}

// Start is when the demo began.
func (d *Demo) Start() time.Time { return d.start }

func (d *Demo) run(ctx context.Context) (err error) {
	d.stage("control plane: embedded NATS with JetStream, event log, projections, command service")
	if err := d.Open(ctx); err != nil {
		return err
	}
	defer func() { err = errors.Join(err, d.Close()) }()
	d.say("NATS %s, data %s, console http://%s/", d.URL(), d.cfg.Data, d.w.ControlPlane().HTTPAddr())
	d.stage("host agents: hv01 at site primary, hv02 at site secondary")
	for _, h := range demoHosts {
		if err := d.StartAgent(ctx, h); err != nil {
			return err
		}
	}
	d.say("agents running, their data in %s; the fabric below registers their hosts", d.w.HostDir("<host>"))
	steps := []func(context.Context) error{d.Fabric, d.protect, d.replicate, d.testFailover, d.makePlan,
		func(ctx context.Context) error { return d.plannedFailover(ctx, "hv01", "secondary") },
		d.replicateBack,
		func(ctx context.Context) error { return d.plannedFailover(ctx, "hv02", "primary") },
		d.unplanned}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			return err
		}
	}
	if d.cfg.Keep {
		d.say("control plane left running (--keep): NATS %s, HTTP %s; Ctrl-C to stop", d.URL(), d.w.ControlPlane().HTTPAddr())
		<-ctx.Done()
	}
	return nil
}

// Fabric builds the two sites through the operator commands and waits
// until both hosts are heard from.
func (d *Demo) Fabric(ctx context.Context) error {
	d.stage("fabric: two sites, a host each, a cloud each, a policy, a pairing")
	steps := append(world.Fabric{Source: "hv01", Recovery: "hv02"}.CLI("p2", "--copy-frequency", "2s", "--retention", "24h", "--app-consistent-every", "1h"),
		[]string{"netmap", "create", "lan", "--source-network", "lan-primary", "--target-network", "lan-secondary"})
	for _, s := range steps {
		if _, err := d.CLI(s...); err != nil {
			return err
		}
	}
	if err := d.WaitReachable(ctx, demoHosts, 15*time.Second); err != nil {
		return err
	}
	d.say("hv01 and hv02 are reachable: the control plane heard their agents' heartbeats (every second here); a host is unknown until its first")
	return nil
}

// protect creates three VMs, shows that the state machine refuses what it
// must, enables replication and follows the initial replication.
func (d *Demo) protect(ctx context.Context) error {
	d.stage("VMs: create three on hv01, refuse a failover of an unprotected one, enable replication")
	for _, vm := range demoVMs {
		if _, err := d.CLI("vm", "create", vm, "--host", "hv01", "--disk", "64MiB", "--network", "lan-primary"); err != nil {
			return err
		}
	}
	for _, vm := range demoVMs {
		v, err := d.WaitVM(ctx, vm, "disk served over NBD", 30*time.Second, func(v projections.VMView) bool {
			return len(v.Disks) > 0 && v.Disks[0].NBDURL != ""
		}, nil)
		if err != nil {
			return err
		}
		d.say("%s: disk0 %s served at %s", vm, InMiB(v.Disks[0].Size), v.Disks[0].NBDURL)
	}
	if err := d.cliRefused("invalid_state", "vm", "planned-failover", "web01"); err != nil {
		return err
	}
	start := time.Now()
	for _, vm := range demoVMs {
		if _, err := d.CLI("vm", "enable", vm); err != nil {
			return err
		}
	}
	for _, vm := range demoVMs {
		if _, err := d.WaitVM(ctx, vm, "Protected", 90*time.Second, func(v projections.VMView) bool {
			return v.ProtectionState == "Protected" && len(v.RecoveryPoints) > 0
		}, func(v projections.VMView) string {
			return progressBar(vm+" initial replication", v.IRProgress)
		}); err != nil {
			return err
		}
	}
	d.say("verified: %d VMs Protected, initial replication of %s in %s", len(demoVMs),
		InMiB(int64(len(demoVMs))*64<<20), time.Since(start).Round(time.Millisecond))
	out, err := d.CLI("status")
	if err != nil {
		return err
	}
	d.printf("%s", indent(out))
	return nil
}

// replicate runs a guest-like workload on every VM through NBD, shows the
// RPO live, then stops the writes and checks each replica byte for byte.
func (d *Demo) replicate(ctx context.Context) error {
	d.stage("delta replication: each VM writes 1 MiB/s of random 64 KiB blocks through NBD for 8 s")
	loads, err := d.startWorkloads()
	if err != nil {
		return err
	}
	maxRPO := int64(0)
	for i := 0; i < 8; i++ {
		time.Sleep(time.Second) // the workload's duration, not a wait for a result
		var parts []string
		for _, vm := range demoVMs {
			v, err := d.VM(vm)
			if err != nil {
				return err
			}
			rpo := int64(-1)
			if v.RPOSeconds != nil {
				rpo = *v.RPOSeconds
				maxRPO = max(maxRPO, rpo)
			}
			parts = append(parts, fmt.Sprintf("%s %ds", vm, rpo))
		}
		if d.cfg.TTY {
			d.printf("\r  RPO now: %-60s", strings.Join(parts, "   "))
		} else if i%4 == 3 {
			d.say("RPO now: %s", strings.Join(parts, "   "))
		}
	}
	if d.cfg.TTY {
		d.printf("\n")
	}
	if err := world.StopWorkloads(loads); err != nil {
		return err
	}
	stopped := time.Now()
	return world.Parallel(demoVMs, func(vm string) error { return d.VerifyReplica(ctx, vm, stopped, loads[vm].Written(), maxRPO) })
}

// VerifyReplica waits for a recovery point closed after the writes stopped
// and compares the replica with the source byte for byte.
func (d *Demo) VerifyReplica(ctx context.Context, vm string, after time.Time, written, maxRPO int64) error {
	v, err := d.WaitVM(ctx, vm, "a recovery point after the writes", 60*time.Second, func(v projections.VMView) bool {
		n := len(v.RecoveryPoints)
		return n > 0 && v.RecoveryPoints[n-1].Time.After(after)
	}, nil)
	if err != nil {
		return err
	}
	rp := v.RecoveryPoints[len(v.RecoveryPoints)-1]
	for _, disk := range v.Disks {
		same, err := world.SameBytes(disk.Image, disk.ReplicaImage)
		if err != nil {
			return fmt.Errorf("%s: compare %s: %w", vm, disk.Name, err)
		}
		if !same {
			return fmt.Errorf("%s: replica %s differs from the source %s at %s", vm, disk.ReplicaImage, disk.Image, rp.ID)
		}
	}
	shipped, err := d.shippedBytes(vm)
	if err != nil {
		return err
	}
	rpo := ""
	if maxRPO >= 0 {
		rpo = fmt.Sprintf(", highest RPO seen %ds", maxRPO)
	}
	d.say("verified: %s replica on %s equals the source on %s at %s (%s written by the guest, %s shipped in all%s)",
		vm, v.RecoveryHost, v.SourceHost, rp.ID, InMiB(written), InMiB(shipped), rpo)
	return nil
}

// makePlan creates the recovery plan of the demo.
func (d *Demo) makePlan(context.Context) error {
	d.stage("recovery plan shop: web01 and web02 first, then db01")
	_, err := d.CLI("plan", "create", "shop", "--group", "web01,web02", "--group", "db01")
	return err
}

// replicateBack writes at the secondary site after the failover and checks
// the reverse replication carries it back to the primary.
func (d *Demo) replicateBack(ctx context.Context) error {
	d.stage("the VMs run at the secondary site: their writes replicate back to hv01")
	loads, err := d.writeFor(3 * time.Second)
	if err != nil {
		return err
	}
	stopped := time.Now()
	return world.Parallel(demoVMs, func(vm string) error { return d.VerifyReplica(ctx, vm, stopped, loads[vm].Written(), -1) })
}

// CLI runs one operator command against the demo's control plane.
func (d *Demo) CLI(args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	full := append(append([]string{}, args...), "--nats", d.URL())
	d.say("$ siterecovery %s", strings.Join(args, " "))
	if code := d.cfg.CLI(full, &stdout, &stderr); code != 0 {
		return "", fmt.Errorf("siterecovery %s: exit %d: %s", strings.Join(args, " "), code, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// cliRefused runs a command that must be refused with code.
func (d *Demo) cliRefused(code string, args ...string) error {
	var stdout, stderr bytes.Buffer
	full := append(append([]string{}, args...), "--nats", d.URL())
	d.say("$ siterecovery %s   (must be refused)", strings.Join(args, " "))
	got := d.cfg.CLI(full, &stdout, &stderr)
	msg := strings.TrimSpace(stderr.String())
	if got != 1 || !strings.Contains(msg, code) {
		return fmt.Errorf("siterecovery %s: want exit 1 with %s, got exit %d: %s", strings.Join(args, " "), code, got, msg)
	}
	d.say("  refused as expected: %s", msg)
	return nil
}

func (d *Demo) stage(title string) {
	d.printf("\n[%6.1fs] == %s\n", time.Since(d.start).Seconds(), title)
}

func (d *Demo) say(format string, args ...any) {
	d.printf("  "+format+"\n", args...)
}

// printf writes to the demo's output; stages verify VMs in parallel.
func (d *Demo) printf(format string, args ...any) {
	d.outMu.Lock()
	defer d.outMu.Unlock()
	fmt.Fprintf(d.out, format, args...)
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return "    " + strings.Join(lines, "\n    ") + "\n"
}
