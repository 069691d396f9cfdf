package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/siterecovery/siterecovery/cmd/siterecovery/controlplane"
	"github.com/siterecovery/siterecovery/projections"
)

// demoConfig is the configuration of `siterecovery demo`.
type demoConfig struct {
	Keep     bool
	Data     string
	HTTP     string
	LogLevel string
}

// demo runs the real system, both sites, in one process: an embedded NATS
// server with JetStream, the control plane and the operator commands, and
// checks what each step should have done.
type demo struct {
	cfg    demoConfig
	out    io.Writer
	cp     *controlplane.ControlPlane
	url    string
	start  time.Time
	logger zerolog.Logger
	agents map[string]*demoAgent
	// tty redraws progress lines in place; otherwise each result is a line.
	tty   bool
	outMu sync.Mutex
}

// demoVMs are the demo's VMs, all on hv01 at the start.
var demoVMs = []string{"web01", "web02", "db01"}

func parseDemo(args []string, stderr io.Writer) (demoConfig, error) {
	var c demoConfig
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&c.Keep, "keep", false, "leave the control plane running at the end, until interrupted")
	fs.StringVar(&c.Data, "data", "", "data directory (default: a new temporary directory, removed at the end)")
	fs.StringVar(&c.HTTP, "http", "127.0.0.1:0", "address of the HTTP endpoint")
	fs.StringVar(&c.LogLevel, "log-level", "warn", "log level of the components")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("demo takes no arguments, got %q", fs.Args())
	}
	return c, nil
}

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseDemo(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "siterecovery demo: %v\n", err)
		return 2
	}
	logger, err := newLogger(cfg.LogLevel, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "siterecovery demo: %v\n", err)
		return 2
	}
	d := &demo{cfg: cfg, out: stdout, start: time.Now(), logger: logger, agents: map[string]*demoAgent{}, tty: isTerminal(stdout)}
	if err := d.run(ctx); err != nil {
		fmt.Fprintf(stdout, "\nFAILED: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "\ndemo verified in %s\n", time.Since(d.start).Round(time.Millisecond))
	return 0
}

func (d *demo) run(ctx context.Context) (err error) {
	if d.cfg.Data == "" {
		dir, err := os.MkdirTemp("", "siterecovery-demo-")
		if err != nil {
			return err
		}
		d.cfg.Data = dir
		if !d.cfg.Keep {
			defer os.RemoveAll(dir)
		}
	}
	d.stage("control plane: embedded NATS with JetStream, event log, projections, command service")
	d.cp, err = controlplane.Open(ctx, controlplane.Config{Data: d.cfg.Data, Listen: "127.0.0.1:0", HTTP: d.cfg.HTTP}, d.logger)
	if err != nil {
		return err
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err = errors.Join(err, d.cp.Close(closeCtx))
	}()
	d.url = d.cp.URL()
	d.say("NATS %s, data %s, console http://%s/", d.url, d.cfg.Data, d.cp.HTTPAddr())
	d.stage("host agents: hv01 at site primary, hv02 at site secondary")
	for _, h := range []string{"hv01", "hv02"} {
		if err := d.startAgent(ctx, h); err != nil {
			return err
		}
	}
	defer func() { err = errors.Join(err, d.stopAgents()) }()
	steps := []func(context.Context) error{d.fabric, d.protect, d.replicate, d.testFailover, d.makePlan,
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
		d.say("control plane left running (--keep): NATS %s, HTTP %s; Ctrl-C to stop", d.url, d.cp.HTTPAddr())
		<-ctx.Done()
	}
	return nil
}

// fabric builds the two sites through the operator commands.
func (d *demo) fabric(context.Context) error {
	d.stage("fabric: two sites, a host each, a cloud each, a policy, a pairing")
	steps := [][]string{
		{"site", "register", "primary"},
		{"site", "register", "secondary"},
		{"host", "register", "hv01", "--site", "primary"},
		{"host", "register", "hv02", "--site", "secondary"},
		{"cloud", "create", "gold", "--site", "primary", "--hosts", "hv01"},
		{"cloud", "create", "gold-dr", "--site", "secondary", "--hosts", "hv02"},
		{"policy", "create", "p2", "--copy-frequency", "2s", "--retention", "24h", "--app-consistent-every", "1h"},
		{"pairing", "create", "--source", "gold", "--target", "gold-dr", "--policy", "p2"},
		{"netmap", "create", "lan", "--source-network", "lan-primary", "--target-network", "lan-secondary"},
	}
	for _, s := range steps {
		if _, err := d.cli(s...); err != nil {
			return err
		}
	}
	return nil
}

// protect creates three VMs, shows that the state machine refuses what it
// must, enables replication and follows the initial replication.
func (d *demo) protect(ctx context.Context) error {
	d.stage("VMs: create three on hv01, refuse a failover of an unprotected one, enable replication")
	for _, vm := range demoVMs {
		if _, err := d.cli("vm", "create", vm, "--host", "hv01", "--disk", "64MiB", "--network", "lan-primary"); err != nil {
			return err
		}
	}
	for _, vm := range demoVMs {
		v, err := d.waitVM(ctx, vm, "disk served over NBD", 30*time.Second, func(v projections.VMView) bool {
			return len(v.Disks) > 0 && v.Disks[0].NBDURL != ""
		}, nil)
		if err != nil {
			return err
		}
		d.say("%s: disk0 %s served at %s", vm, inMiB(v.Disks[0].Size), v.Disks[0].NBDURL)
	}
	if err := d.cliRefused("invalid_state", "vm", "planned-failover", "web01"); err != nil {
		return err
	}
	start := time.Now()
	for _, vm := range demoVMs {
		if _, err := d.cli("vm", "enable", vm); err != nil {
			return err
		}
	}
	for _, vm := range demoVMs {
		if _, err := d.waitVM(ctx, vm, "Protected", 90*time.Second, func(v projections.VMView) bool {
			return v.ProtectionState == "Protected" && len(v.RecoveryPoints) > 0
		}, func(v projections.VMView) string {
			return progressBar(vm+" initial replication", v.IRProgress)
		}); err != nil {
			return err
		}
	}
	d.say("verified: %d VMs Protected, initial replication of %s in %s", len(demoVMs),
		inMiB(int64(len(demoVMs))*64<<20), time.Since(start).Round(time.Millisecond))
	out, err := d.cli("status")
	if err != nil {
		return err
	}
	d.printf("%s", indent(out))
	return nil
}

// replicate runs a guest-like workload on every VM through NBD, shows the
// RPO live, then stops the writes and checks each replica byte for byte.
func (d *demo) replicate(ctx context.Context) error {
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
			v, err := d.vm(vm)
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
		if d.tty {
			d.printf("\r  RPO now: %-60s", strings.Join(parts, "   "))
		} else if i%4 == 3 {
			d.say("RPO now: %s", strings.Join(parts, "   "))
		}
	}
	if d.tty {
		d.printf("\n")
	}
	if err := stopWorkloads(loads); err != nil {
		return err
	}
	stopped := time.Now()
	return parallel(demoVMs, func(vm string) error { return d.verifyReplica(ctx, vm, stopped, loads[vm].written, maxRPO) })
}

// verifyReplica waits for a recovery point closed after the writes stopped
// and compares the replica with the source byte for byte.
func (d *demo) verifyReplica(ctx context.Context, vm string, after time.Time, written, maxRPO int64) error {
	v, err := d.waitVM(ctx, vm, "a recovery point after the writes", 60*time.Second, func(v projections.VMView) bool {
		n := len(v.RecoveryPoints)
		return n > 0 && v.RecoveryPoints[n-1].Time.After(after)
	}, nil)
	if err != nil {
		return err
	}
	rp := v.RecoveryPoints[len(v.RecoveryPoints)-1]
	for _, disk := range v.Disks {
		same, err := sameBytes(disk.Image, disk.ReplicaImage)
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
		vm, v.RecoveryHost, v.SourceHost, rp.ID, inMiB(written), inMiB(shipped), rpo)
	return nil
}

// makePlan creates the recovery plan of the demo.
func (d *demo) makePlan(context.Context) error {
	d.stage("recovery plan shop: web01 and web02 first, then db01")
	_, err := d.cli("plan", "create", "shop", "--group", "web01,web02", "--group", "db01")
	return err
}

// replicateBack writes at the secondary site after the failover and checks
// the reverse replication carries it back to the primary.
func (d *demo) replicateBack(ctx context.Context) error {
	d.stage("the VMs run at the secondary site: their writes replicate back to hv01")
	loads, err := d.writeFor(3 * time.Second)
	if err != nil {
		return err
	}
	stopped := time.Now()
	return parallel(demoVMs, func(vm string) error { return d.verifyReplica(ctx, vm, stopped, loads[vm].written, -1) })
}

// cli runs one operator command against the demo's control plane.
func (d *demo) cli(args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	full := append(append([]string{}, args...), "--nats", d.url)
	d.say("$ siterecovery %s", strings.Join(args, " "))
	if code := runOperator(full, &stdout, &stderr); code != 0 {
		return "", fmt.Errorf("siterecovery %s: exit %d: %s", strings.Join(args, " "), code, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// cliRefused runs a command that must be refused with code.
func (d *demo) cliRefused(code string, args ...string) error {
	var stdout, stderr bytes.Buffer
	full := append(append([]string{}, args...), "--nats", d.url)
	d.say("$ siterecovery %s   (must be refused)", strings.Join(args, " "))
	got := runOperator(full, &stdout, &stderr)
	msg := strings.TrimSpace(stderr.String())
	if got != 1 || !strings.Contains(msg, code) {
		return fmt.Errorf("siterecovery %s: want exit 1 with %s, got exit %d: %s", strings.Join(args, " "), code, got, msg)
	}
	d.say("  refused as expected: %s", msg)
	return nil
}

func (d *demo) stage(title string) {
	d.printf("\n[%6.1fs] == %s\n", time.Since(d.start).Seconds(), title)
}

func (d *demo) say(format string, args ...any) {
	d.printf("  "+format+"\n", args...)
}

// printf writes to the demo's output; stages verify VMs in parallel.
func (d *demo) printf(format string, args ...any) {
	d.outMu.Lock()
	defer d.outMu.Unlock()
	fmt.Fprintf(d.out, format, args...)
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return "    " + strings.Join(lines, "\n    ") + "\n"
}
