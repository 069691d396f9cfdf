package scale

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/projections"
	"github.com/siterecovery/siterecovery/test/bench"
)

// copyLog reads the world's whole event log.
func (w *scaleWorld) copyLog(ctx context.Context) ([]events.Record, error) {
	last, err := w.w.ControlPlane().Log().LastSeq(ctx)
	if err != nil {
		return nil, err
	}
	cur, err := w.w.ControlPlane().Log().Follow(ctx, 1)
	if err != nil {
		return nil, err
	}
	defer cur.Close()
	var recs []events.Record
	for uint64(len(recs)) < last {
		batch, err := cur.Next(ctx, 1000)
		if err != nil {
			return nil, fmt.Errorf("copy the log at %d of %d: %w", len(recs), last, err)
		}
		recs = append(recs, batch...)
	}
	return recs, nil
}

// measureRebuild builds a log of cfg.Events events in memory (the world's
// own events, then recovery points of its VMs every cycle, pruned past an
// hour's retention, and a few health changes, as production makes them),
// and times fresh projections from nothing until their checkpoint is the
// last event. The log is an events.MemLog: appending a million events to
// JetStream with SyncAlways takes far longer than the rebuild itself.
func measureRebuild(ctx context.Context, cfg Config, world []events.Record, out io.Writer) ([]bench.Figure, error) {
	start := time.Now()
	log, vms, err := buildRebuildLog(ctx, world, cfg.Events)
	if err != nil {
		return nil, err
	}
	last, err := log.LastSeq(ctx)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "scale: log of %d events built in memory in %s; rebuilding the projections\n", last, time.Since(start).Round(time.Millisecond))
	dir := filepath.Join(cfg.Data, "rebuild")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "projections.db")
	start, cpu0 := time.Now(), cpuTime()
	s, err := projections.Open(ctx, path, log, zerolog.Nop())
	if err != nil {
		return nil, err
	}
	err = s.WaitFor(ctx, last)
	took, cpu := time.Since(start), cpuTime()-cpu0
	var direct []bench.Figure
	if err == nil {
		direct, err = directQueries(ctx, s, vms, cfg.Queries)
	}
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("rebuild: %w", err)
	}
	bound := targetRebuildS * float64(last) / targetRebuildEv
	note := fmt.Sprintf("%d events from an in-memory log into a fresh bbolt file", last)
	return append([]bench.Figure{
		targetFigure(fmt.Sprintf("projection rebuild of %d events", last), took.Seconds(), "s", bound, note),
		{Name: "projection rebuild CPU time", Value: cpu.Seconds(), Unit: "s", Note: "user+system CPU of the process during the rebuild: its time on an idle core"},
		{Name: "projection rebuild rate", Value: float64(last) / took.Seconds(), Unit: "events/s",
			Baseline: targetRebuildEv / targetRebuildS, BaselineName: "target rate",
			Ratio: float64(last) / took.Seconds() / (targetRebuildEv / targetRebuildS), Target: fmt.Sprintf("> %.0f events/s", targetRebuildEv/targetRebuildS),
			Meets: float64(last)/took.Seconds() > targetRebuildEv/targetRebuildS},
	}, direct...), nil
}

// directQueries times the status and vm queries on the rebuilt store in
// process (no NATS, nothing else of ours running): their wall time and the
// CPU time each costs.
func directQueries(ctx context.Context, s *projections.Store, vms []string, n int) ([]bench.Figure, error) {
	var figs []bench.Figure
	for _, q := range []string{"status", "vm"} {
		ds := make([]time.Duration, 0, n)
		cpu0 := cpuTime()
		for i := range n {
			params := json.RawMessage(`{}`)
			if q == "vm" {
				params = json.RawMessage(fmt.Sprintf(`{"vm":%q}`, vms[i%len(vms)]))
			}
			start := time.Now()
			res, err := s.Query(ctx, q, params)
			if err == nil {
				_, err = json.Marshal(res)
			}
			if err != nil {
				return nil, fmt.Errorf("query %s on the rebuilt store: %w", q, err)
			}
			ds = append(ds, time.Since(start))
		}
		cpu := cpuTime() - cpu0
		name := "status query"
		if q == "vm" {
			name = "vm show query"
		}
		figs = append(figs, latencyFigures(name+" in process", ds, 0, "queries on the rebuilt store, no NATS")...)
		figs = append(figs, bench.Figure{Name: name + " CPU per request", Value: float64(cpu.Microseconds()) / 1000 / float64(n), Unit: "ms",
			Note: "CPU time of the query and its JSON, in process: its latency on an idle core"})
	}
	return figs, nil
}

// cpuTime is the user and system CPU time the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// pointsRetained is how many points a VM keeps in the rebuild's log: an
// hour of 30 s cycles; older ones are pruned ten at a time.
const pointsRetained = 120

// buildRebuildLog appends world's events (command by command, as they were
// appended) to a new MemLog, then recovery points of world's VMs until the
// log holds n events.
func buildRebuildLog(ctx context.Context, world []events.Record, n int) (*events.MemLog, []string, error) {
	log := events.NewMemLog()
	last := map[events.Aggregate]uint64{}
	var vms []string
	appendCmd := func(agg events.Aggregate, meta events.Meta, evs ...events.Data) error {
		res, err := log.Append(ctx, agg, last[agg], meta, evs...)
		if err != nil {
			return err
		}
		last[agg] = res.Last()
		return nil
	}
	for i := 0; i < len(world) && i < n; {
		j := i + 1
		for j < len(world) && world[j].Index > 0 {
			j++
		}
		evs := make([]events.Data, 0, j-i)
		for _, r := range world[i:j] {
			evs = append(evs, r.Data)
			if c, ok := r.Data.(events.VMCreatedData); ok {
				vms = append(vms, c.Name)
			}
		}
		if err := appendCmd(world[i].Aggregate, world[i].Meta, evs...); err != nil {
			return nil, nil, fmt.Errorf("copy event %d: %w", world[i].Seq, err)
		}
		i = j
	}
	if len(vms) == 0 {
		return nil, nil, fmt.Errorf("rebuild log: the world has no VMs")
	}
	return log, vms, appendPoints(ctx, log, vms, n, appendCmd)
}

// appendPoints appends a recovery point of each VM in turn, cycle after
// cycle, a prune of the points an hour old every tenth cycle past the
// retention, and a health warning and its end about every hundredth
// point, until the log holds at least n.
func appendPoints(ctx context.Context, log *events.MemLog, vms []string, n int,
	appendCmd func(events.Aggregate, events.Meta, ...events.Data) error) error {
	roots := map[string]string{"disk0": "b3a1c2d4e5f60718"}
	at := time.Now().UTC()
	for k := 0; ; k++ {
		have, err := log.LastSeq(ctx)
		if err != nil || have >= uint64(n) {
			return err
		}
		vm, cycle := vms[k%len(vms)], k/len(vms)+1_000_000
		var d events.Data = events.RecoveryPointCreatedData{ID: fmt.Sprintf("rp-%07d", cycle), Time: at,
			AppConsistent: cycle%480 == 0, Cycle: uint64(cycle), Epoch: 1, Bytes: 1 << 20, Roots: roots}
		if rel := cycle - 1_000_000; rel >= pointsRetained && rel%10 == 0 {
			// the nine points of ten cycles an hour ago (a prune cycle
			// has no point of its own)
			ids := make([]string, 9)
			for i := range ids {
				ids[i] = fmt.Sprintf("rp-%07d", cycle-pointsRetained+i+1)
			}
			d = events.RecoveryPointsPrunedData{IDs: ids}
		}
		at = at.Add(30 * time.Second / time.Duration(len(vms)))
		evs := []events.Data{d}
		if k%97 == 0 {
			evs = append(evs, events.HealthChangedData{Health: events.HealthWarning, Issues: []string{"rpo above threshold"}},
				events.HealthChangedData{Health: events.HealthNormal})
		}
		for i, d := range evs {
			meta := events.Meta{At: at, CommandID: fmt.Sprintf("sim-%d-%d", k, i), CorrelationID: fmt.Sprintf("sim-%d", k), Actor: "agent"}
			if err := appendCmd(events.VMAgg(vm), meta, d); err != nil {
				return err
			}
		}
	}
}
