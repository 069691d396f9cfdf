package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"
)

// Config is the configuration of the benchmarks.
type Config struct {
	JSON     bool
	Quick    bool
	Smoke    bool
	Only     string // comma-separated benchmark names; empty: all
	Markdown string // a file whose generated section is rewritten with the figures
	CPUProf  string // a file for a CPU profile of the whole run
	Data     string
	Logger   zerolog.Logger
}

// Figure is one measured figure beside its baseline, measured in the same
// run. Ratio is oriented so that higher is better (the target is a lower
// bound on it), except where Target says otherwise.
type Figure struct {
	Name         string  `json:"name"`
	Value        float64 `json:"value"`
	Unit         string  `json:"unit"`
	Baseline     float64 `json:"baseline"`
	BaselineName string  `json:"baseline_name"`
	Ratio        float64 `json:"ratio"`
	Target       string  `json:"target"`
	Meets        bool    `json:"meets"`
	Note         string  `json:"note,omitempty"`
}

// benchmark is one end-to-end benchmark: it returns its figures.
type benchmark struct {
	name string
	run  func(ctx context.Context, e *benchEnv) ([]Figure, error)
}

// benchmarks is the suite, in the order it runs. The NBD benchmark runs
// first: after the replay benchmark, 4 KiB random writes ran 3-4 times
// slower for qemu-nbd too (13-19 MiB/s against 45-62), which made the
// ratio look better than it is. The failover and resync benchmarks run
// after the RPO run, so their VMs do not load it.
var benchmarks = []benchmark{
	{"nbd", benchNBDWrites},
	{"commands", benchCommands},
	{"replay", benchReplay},
	{"ir", benchIR},
	{"delta", benchDelta},
	{"rpo", benchRPO},
	{"failover", benchFailover},
	{"resync", benchResync},
}

// Validate checks the options that exclude each other and the names of
// Only.
func (c Config) Validate() error {
	if c.Quick && c.Smoke {
		return errors.New("--quick and --smoke exclude each other")
	}
	for _, n := range c.only() {
		if !strings.Contains(","+Names()+",", ","+n+",") {
			return fmt.Errorf("--only: unknown benchmark %q (benchmarks: %s)", n, Names())
		}
	}
	return nil
}

// Names lists the benchmarks, comma-separated, in the order they run.
func Names() string {
	names := make([]string, len(benchmarks))
	for i, b := range benchmarks {
		names[i] = b.name
	}
	return strings.Join(names, ",")
}

func (c Config) only() []string {
	if c.Only == "" {
		return nil
	}
	return strings.Split(c.Only, ",")
}

func (c Config) selected(name string) bool {
	only := c.only()
	if len(only) == 0 {
		return true
	}
	for _, n := range only {
		if n == name {
			return true
		}
	}
	return false
}

// Run runs the end-to-end benchmarks and prints their figures on
// stdout, its progress and errors on stderr; the error is the first
// failure (the figures measured before it are printed).
func Run(ctx context.Context, cfg Config, stdout, stderr io.Writer) error {
	stopProfile, err := startCPUProfile(cfg.CPUProf)
	if err != nil {
		fmt.Fprintf(stderr, "siterecovery bench: %v\n", err)
		return err
	}
	start := time.Now()
	figs, err := benchMain(ctx, cfg, stderr, cfg.Logger)
	err = errors.Join(err, stopProfile())
	if err != nil {
		fmt.Fprintf(stderr, "siterecovery bench: %v\n", err)
	}
	if werr := writeFigures(cfg, figs, stdout); werr != nil {
		fmt.Fprintf(stderr, "siterecovery bench: %v\n", werr)
		return werr
	}
	if cfg.Markdown != "" && err == nil {
		if merr := writeMarkdown(cfg, figs, time.Since(start)); merr != nil {
			fmt.Fprintf(stderr, "siterecovery bench: %v\n", merr)
			return merr
		}
	}
	return err
}

// benchMain opens the environment and runs each selected benchmark,
// reporting progress on progress; it returns the figures measured so far
// with the first error.
func benchMain(ctx context.Context, cfg Config, progress io.Writer, logger zerolog.Logger) (figs []Figure, err error) {
	e, err := openBenchEnv(ctx, cfg, logger)
	if err != nil {
		return nil, err
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		err = errors.Join(err, e.Close(closeCtx))
	}()
	fmt.Fprintf(progress, "bench: %s sizes, %d CPUs, load average %s\n", e.sizes.name, runtime.NumCPU(), loadAverage())
	for _, b := range benchmarks {
		if !cfg.selected(b.name) {
			continue
		}
		// What the previous benchmark left dirty is written back first, so
		// that its writeback does not slow this one's fsyncs (or only its
		// baseline's).
		if err := runTool(ctx, "sync"); err != nil {
			return figs, err
		}
		t0 := time.Now()
		fmt.Fprintf(progress, "bench: %s ...\n", b.name)
		got, err := b.run(ctx, e)
		figs = append(figs, got...)
		if err != nil {
			return figs, fmt.Errorf("%s: %w", b.name, err)
		}
		fmt.Fprintf(progress, "bench: %s done in %s (load average %s)\n", b.name, time.Since(t0).Round(100*time.Millisecond), loadAverage())
	}
	return figs, nil
}

// startCPUProfile profiles the process into path until the returned
// function is called; an empty path profiles nothing.
func startCPUProfile(path string) (func() error, error) {
	if path == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		return nil, errors.Join(err, f.Close())
	}
	return func() error {
		pprof.StopCPUProfile()
		return f.Close()
	}, nil
}

// loadAverage is the 1, 5 and 15 minute load average, or "unknown".
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func writeFigures(cfg Config, figs []Figure, w io.Writer) error {
	if cfg.JSON {
		enc := json.NewEncoder(w)
		for _, f := range figs {
			if err := enc.Encode(f.finite()); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FIGURE\tVALUE\tBASELINE\tRATIO\tTARGET\tMEETS")
	for _, f := range figs {
		fmt.Fprintf(tw, "%s\t%s %s\t%s (%s)\t%s\t%s\t%s\n", f.Name, num(f.Value), f.Unit, num(f.Baseline),
			f.BaselineName, num(f.Ratio), f.Target, yesNo(f.Meets))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, f := range figs {
		if f.Note != "" {
			fmt.Fprintf(w, "  %s: %s\n", f.Name, f.Note)
		}
	}
	return nil
}

// finite replaces values JSON cannot carry (a division by a zero time).
func (f Figure) finite() Figure {
	for _, v := range []*float64{&f.Value, &f.Baseline, &f.Ratio} {
		if math.IsNaN(*v) || math.IsInf(*v, 0) {
			*v = 0
		}
	}
	return f
}

func num(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1000:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "NO"
}
