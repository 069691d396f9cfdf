package scale

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"

	"github.com/siterecovery/siterecovery/test/bench"
)

// Config is the configuration of the scale run.
type Config struct {
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
	Logger     zerolog.Logger
}

// Defaults are the sizes; Quick the test's.
func Defaults() Config {
	return Config{VMs: 1000, Hosts: 10, Events: 1_000_000, Window: 60 * time.Second, Queries: 300,
		PointEvery: 30 * time.Second}
}

func Quick(c Config) Config {
	c.VMs, c.Events, c.Window, c.Queries = 100, 100_000, 10*time.Second, 100
	return c
}

// Result is what a scale run measured: its figures, in the order
// printed, and the load of the machine while it ran.
type Result struct {
	Figures []bench.Figure
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

// Validate checks the sizes.
func (c Config) Validate() error {
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

// Run runs the scale benchmark: a control plane with cfg.VMs VMs
// protected by cfg.Hosts simulated hosts, its memory, query latency and
// events/s at steady state, then the rebuild of fresh projections from a
// log of cfg.Events events. Progress lines go to out.
func Run(ctx context.Context, cfg Config, out io.Writer) (res Result, err error) {
	if err := cfg.Validate(); err != nil {
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
func targetFigure(name string, value float64, unit string, bound float64, note string) bench.Figure {
	f := bench.Figure{Name: name, Value: value, Unit: unit, Baseline: bound, BaselineName: "target",
		Target: fmt.Sprintf("< %g %s", bound, unit), Meets: value < bound, Note: note}
	if value > 0 {
		f.Ratio = bound / value
	}
	return f
}

// Print writes the figures: a table, or one JSON object per figure.
func Print(out io.Writer, cfg Config, res Result) error {
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
