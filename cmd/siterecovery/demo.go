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
	"time"

	"github.com/rs/zerolog"
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
	cp     *controlPlane
	url    string
	start  time.Time
	logger zerolog.Logger
}

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
	d := &demo{cfg: cfg, out: stdout, start: time.Now(), logger: logger}
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
	d.cp, err = openControlPlane(ctx, serveConfig{Data: d.cfg.Data, Listen: "127.0.0.1:0", HTTP: d.cfg.HTTP}, d.logger)
	if err != nil {
		return err
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err = errors.Join(err, d.cp.Close(closeCtx))
	}()
	d.url = d.cp.URL()
	d.say("NATS %s, data %s", d.url, d.cfg.Data)
	if err := d.fabric(); err != nil {
		return err
	}
	if err := d.protect(); err != nil {
		return err
	}
	if d.cfg.Keep {
		d.say("control plane left running (--keep): NATS %s, HTTP %s; Ctrl-C to stop", d.url, d.cp.httpLn.Addr())
		<-ctx.Done()
	}
	return nil
}

// fabric builds the two sites through the operator commands.
func (d *demo) fabric() error {
	d.stage("fabric: two sites, a host each, a cloud each, a policy, a pairing")
	steps := [][]string{
		{"site", "register", "primary"},
		{"site", "register", "secondary"},
		{"host", "register", "hv01", "--site", "primary"},
		{"host", "register", "hv02", "--site", "secondary"},
		{"cloud", "create", "gold", "--site", "primary", "--hosts", "hv01"},
		{"cloud", "create", "gold-dr", "--site", "secondary", "--hosts", "hv02"},
		{"policy", "create", "p5", "--copy-frequency", "5s", "--retention", "24h", "--app-consistent-every", "1h"},
		{"pairing", "create", "--source", "gold", "--target", "gold-dr", "--policy", "p5"},
		{"netmap", "create", "lan", "--source-network", "lan-primary", "--target-network", "lan-secondary"},
	}
	for _, s := range steps {
		if _, err := d.cli(s...); err != nil {
			return err
		}
	}
	return nil
}

// protect creates three VMs and enables replication, and shows that the
// state machine refuses what it must.
func (d *demo) protect() error {
	d.stage("VMs: create three, refuse a failover of an unprotected one, enable replication")
	for _, vm := range []string{"web01", "web02", "db01"} {
		if _, err := d.cli("vm", "create", vm, "--host", "hv01", "--disk", "64MiB", "--network", "lan-primary"); err != nil {
			return err
		}
	}
	if err := d.cliRefused("invalid_state", "vm", "planned-failover", "web01"); err != nil {
		return err
	}
	for _, vm := range []string{"web01", "web02", "db01"} {
		if _, err := d.cli("vm", "enable", vm); err != nil {
			return err
		}
	}
	out, err := d.cli("status")
	if err != nil {
		return err
	}
	fmt.Fprint(d.out, indent(out))
	return nil
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
	fmt.Fprintf(d.out, "\n[%6.1fs] == %s\n", time.Since(d.start).Seconds(), title)
}

func (d *demo) say(format string, args ...any) {
	fmt.Fprintf(d.out, "  "+format+"\n", args...)
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return "    " + strings.Join(lines, "\n    ") + "\n"
}
