package scale

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/siterecovery/siterecovery/test/bench"
	"github.com/siterecovery/siterecovery/test/world"
)

// measure watches the steady state for the window: events/s appended,
// the process's resident memory (sampled, the highest kept) and the
// latency of the status and vm queries, asked in turn across the window
// while the hosts report.
func (w *scaleWorld) measure(ctx context.Context) ([]bench.Figure, error) {
	// let every host's point loop start and the protect burst settle
	if err := world.Sleep(ctx, min(5*time.Second, w.cfg.Window/2)); err != nil {
		return nil, err
	}
	seq0, err := w.w.ControlPlane().Log().LastSeq(ctx)
	if err != nil {
		return nil, err
	}
	reports0, skipped0, t0, cpu0 := w.reports.Load(), w.skipped.Load(), time.Now(), cpuTime()
	w.latMu.Lock()
	w.pointLat = nil
	w.latMu.Unlock()
	status, vm, rss, err := w.queryLoad(ctx)
	if err != nil {
		return nil, err
	}
	if rest := w.cfg.Window - time.Since(t0); rest > 0 {
		if err := world.Sleep(ctx, rest); err != nil {
			return nil, err
		}
	}
	seq1, err := w.w.ControlPlane().Log().LastSeq(ctx)
	if err != nil {
		return nil, err
	}
	took, cpu := time.Since(t0).Seconds(), cpuTime()-cpu0
	if n := w.refused.Load(); n > 0 {
		return nil, fmt.Errorf("%d agent reports refused at steady state, the first: %v", n, *w.firstErr.Load())
	}
	rss = max(rss, residentMB())
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	offered := float64(w.cfg.VMs) / w.cfg.PointEvery.Seconds()
	evs := float64(seq1-seq0) / took
	reports := float64(w.reports.Load() - reports0)
	procNote := fmt.Sprintf("whole process: control plane, embedded NATS, %d simulated hosts", w.cfg.Hosts)
	figs := []bench.Figure{
		targetFigure("serve resident memory", rss, "MB", targetRSSMB, procNote),
		{Name: "serve Go heap in use", Value: float64(ms.HeapInuse) / (1 << 20), Unit: "MB", Note: fmt.Sprintf("Go runtime, sys %.0f MB", float64(ms.Sys)/(1<<20))},
		{Name: "events appended at steady state", Value: evs, Unit: "events/s", Baseline: offered, BaselineName: "points offered",
			Ratio: evs / offered, Note: fmt.Sprintf("%d VMs, a point each %s; %.1f reports/s accepted; %d points skipped (64 reports waiting at their host)",
				w.cfg.VMs, w.cfg.PointEvery, reports/took, w.skipped.Load()-skipped0)},
		{Name: "process CPU at steady state", Value: cpu.Seconds() / took * 100, Unit: "% of a core",
			Note: fmt.Sprintf("%.1f ms of CPU per accepted report, queries included", cpu.Seconds()*1000/max(reports, 1))},
	}
	figs = append(figs, latencyFigures("status query", status, targetQueryMS, "requests over NATS at steady state")...)
	figs = append(figs, latencyFigures("vm show query", vm, targetQueryMS, "requests over NATS at steady state")...)
	w.latMu.Lock()
	defer w.latMu.Unlock()
	if len(w.pointLat) > 0 {
		figs = append(figs, latencyFigures("recovery_point report", w.pointLat, 0, "reports' round trips (decide, append with fsync, reply)")...)
	}
	return figs, nil
}

// queryLoad asks sr.q.status and sr.q.vm (a random VM) in turn, Queries
// of each, paced over most of the window, and samples the resident memory
// every tenth request.
func (w *scaleWorld) queryLoad(ctx context.Context) (status, vm []time.Duration, rss float64, err error) {
	pace := w.cfg.Window * 8 / 10 / time.Duration(2*w.cfg.Queries)
	for i := range w.cfg.Queries {
		start := time.Now()
		if _, err := world.Request(w.w.Conn(), "sr.q.status", map[string]any{}); err != nil {
			return nil, nil, 0, err
		}
		status = append(status, time.Since(start))
		name := w.vms[rand.IntN(len(w.vms))].name
		start = time.Now()
		if _, err := world.Request(w.w.Conn(), "sr.q.vm", map[string]any{"vm": name}); err != nil {
			return nil, nil, 0, err
		}
		vm = append(vm, time.Since(start))
		if i%10 == 0 {
			rss = max(rss, residentMB())
		}
		if err := world.Sleep(ctx, pace-time.Since(start)); err != nil {
			return nil, nil, 0, err
		}
	}
	return status, vm, rss, nil
}

// latencyFigures are p50 and p99 of the durations, against the target
// (none if 0).
func latencyFigures(name string, ds []time.Duration, target float64, what string) []bench.Figure {
	slices.Sort(ds)
	pct := func(p float64) float64 {
		i := min(len(ds)-1, int(p*float64(len(ds))))
		return float64(ds[i].Microseconds()) / 1000
	}
	note := fmt.Sprintf("%d %s", len(ds), what)
	if target == 0 {
		return []bench.Figure{{Name: name + " p50", Value: pct(0.50), Unit: "ms", Note: note},
			{Name: name + " p99", Value: pct(0.99), Unit: "ms", Note: note}}
	}
	return []bench.Figure{
		targetFigure(name+" p50", pct(0.50), "ms", target, note),
		targetFigure(name+" p99", pct(0.99), "ms", target, note),
	}
}

// residentMB is VmRSS of /proc/self/status in MB, 0 where unknown.
func residentMB() float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				return 0
			}
			return kb / 1024
		}
	}
	return 0
}
