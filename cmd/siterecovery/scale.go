package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"text/tabwriter"
	"time"
)

// scaleConfig is the configuration of `siterecovery scale`.
type scaleConfig struct {
	VMs    int
	Hosts  int // simulated hosts, half at each site
	Events int // size of the log rebuilt into fresh projections
	// Window is how long the steady state is watched for events/s.
	Window time.Duration
	// Queries is how many requests of each query are timed.
	Queries int
	// PointEvery is each VM's recovery point interval (30 s as the policy).
	PointEvery time.Duration
	JSON       bool
	Data       string
	LogLevel   string
}

// scaleDefaults are the sizes; quickScale the test's.
func scaleDefaults() scaleConfig {
	return scaleConfig{VMs: 1000, Hosts: 10, Events: 1_000_000, Window: 60 * time.Second, Queries: 300,
		PointEvery: 30 * time.Second, LogLevel: "error"}
}

func quickScale(c scaleConfig) scaleConfig {
	c.VMs, c.Events, c.Window, c.Queries = 100, 100_000, 10*time.Second, 100
	return c
}

// scaleResult is what a scale run measured: its figures, in the order
// printed, and the load of the machine while it ran.
type scaleResult struct {
	Figures []figure
	// LoadAvg is /proc/loadavg at the start and at the end of the run.
	LoadStart, LoadEnd string
}

// Scale targets of issue 7.
const (
	targetRSSMB     = 500.0
	targetQueryMS   = 50.0
	targetRebuildS  = 60.0
	targetRebuildEv = 1_000_000
)

func parseScale(args []string, stderr io.Writer) (scaleConfig, error) {
	c := scaleDefaults()
	var quick bool
	fs := flag.NewFlagSet("scale", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&c.VMs, "vms", c.VMs, "protected VMs on the control plane")
	fs.IntVar(&c.Hosts, "hosts", c.Hosts, "simulated hosts (an even number: half at each site)")
	fs.IntVar(&c.Events, "events", c.Events, "events in the log rebuilt into fresh projections")
	fs.DurationVar(&c.Window, "window", c.Window, "how long the steady state is measured")
	fs.BoolVar(&quick, "quick", false, "100 VMs, 100k events, a 10 s window (sizes given explicitly still apply)")
	fs.BoolVar(&c.JSON, "json", false, "print one JSON object per figure instead of a table")
	fs.StringVar(&c.Data, "data", "", "data directory (default: a new temporary directory, removed at the end)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log level of the components")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("scale takes no arguments, got %q", fs.Args())
	}
	if quick {
		q := quickScale(scaleDefaults())
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["vms"] {
			c.VMs = q.VMs
		}
		if !set["events"] {
			c.Events = q.Events
		}
		if !set["window"] {
			c.Window = q.Window
		}
		c.Queries = q.Queries
	}
	return c, c.validate()
}

func (c scaleConfig) validate() error {
	switch {
	case c.VMs < 1:
		return fmt.Errorf("--vms %d: want at least 1", c.VMs)
	case c.Hosts < 2 || c.Hosts%2 != 0:
		return fmt.Errorf("--hosts %d: want an even number, at least 2", c.Hosts)
	case c.Hosts > 200:
		return fmt.Errorf("--hosts %d: want at most 200", c.Hosts)
	case c.Events < 1000:
		return fmt.Errorf("--events %d: want at least 1000", c.Events)
	case c.Window < time.Second:
		return fmt.Errorf("--window %s: want at least 1s", c.Window)
	case c.Queries < 10:
		return fmt.Errorf("queries %d: want at least 10", c.Queries)
	case c.PointEvery <= 0:
		return fmt.Errorf("point interval %s: must be positive", c.PointEvery)
	}
	return nil
}

// runScaleCmd is `siterecovery scale`.
func runScaleCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseScale(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "siterecovery scale: %v\n", err)
		return 2
	}
	progress := stderr
	if cfg.JSON {
		progress = io.Discard
	}
	res, err := runScale(ctx, cfg, progress)
	if err != nil {
		fmt.Fprintf(stderr, "siterecovery scale: %v\n", err)
		return 1
	}
	if err := printScale(stdout, cfg, res); err != nil {
		fmt.Fprintf(stderr, "siterecovery scale: %v\n", err)
		return 1
	}
	return 0
}

// runScale runs the scale benchmark: a control plane with cfg.VMs VMs
// protected by cfg.Hosts simulated hosts, its memory, query latency and
// events/s at steady state, then the rebuild of fresh projections from a
// log of cfg.Events events. Progress lines go to out.
func runScale(ctx context.Context, cfg scaleConfig, out io.Writer) (res scaleResult, err error) {
	if err := cfg.validate(); err != nil {
		return res, err
	}
	res.LoadStart = loadAvg()
	if cfg.Data == "" {
		dir, err := os.MkdirTemp("", "siterecovery-scale-")
		if err != nil {
			return res, err
		}
		defer os.RemoveAll(dir)
		cfg.Data = dir
	}
	w, err := openScaleWorld(ctx, cfg, out)
	if err != nil {
		return res, err
	}
	steady, err := w.measure(ctx)
	recs, copyErr := w.copyLog(ctx)
	if err = errors.Join(err, copyErr, w.Close()); err != nil {
		return res, err
	}
	res.Figures = steady
	rebuild, err := measureRebuild(ctx, cfg, recs, out)
	if err != nil {
		return res, err
	}
	res.Figures = append(res.Figures, rebuild...)
	res.LoadEnd = loadAvg()
	return res, nil
}

// loadAvg is the first three fields of /proc/loadavg.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	var a, b5, c string
	fmt.Sscan(string(b), &a, &b5, &c)
	return a + " " + b5 + " " + c
}

// targetFigure fills a figure whose target is an upper bound: the baseline
// is the target itself and the ratio target/value, so that above 1 meets it.
func targetFigure(name string, value float64, unit string, bound float64, note string) figure {
	f := figure{Name: name, Value: value, Unit: unit, Baseline: bound, BaselineName: "target",
		Target: fmt.Sprintf("< %g %s", bound, unit), Meets: value < bound, Note: note}
	if value > 0 {
		f.Ratio = bound / value
	}
	return f
}

func printScale(out io.Writer, cfg scaleConfig, res scaleResult) error {
	if cfg.JSON {
		enc := json.NewEncoder(out)
		for _, f := range res.Figures {
			if err := enc.Encode(f); err != nil {
				return err
			}
		}
		return nil
	}
	fmt.Fprintf(out, "scale: %d VMs, %d simulated hosts, rebuild of %d events; %d CPUs, load average %s at the start, %s at the end\n\n",
		cfg.VMs, cfg.Hosts, cfg.Events, runtime.NumCPU(), res.LoadStart, res.LoadEnd)
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "figure\tvalue\ttarget\tmet?\tnote")
	for _, f := range res.Figures {
		met := "-"
		if f.Target != "" {
			met = "no"
			if f.Meets {
				met = fmt.Sprintf("yes (%.1fx)", f.Ratio)
			}
		}
		fmt.Fprintf(tw, "%s\t%.4g %s\t%s\t%s\t%s\n", f.Name, f.Value, f.Unit, f.Target, met, f.Note)
	}
	return tw.Flush()
}
