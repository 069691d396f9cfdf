package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"time"

	njs "github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"
	bolt "go.etcd.io/bbolt"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/jetstream"
	"github.com/siterecovery/siterecovery/projections"
)

// benchCommands measures commands per second through the control plane's
// micro service (request → decide → append, fsynced → reply; one client,
// one command at a time, policy create with unique names: a command that
// only appends, as site register would also make a delta stream) against raw
// JetStream publishes of an event-sized payload, one at a time, to a stream
// with SR_EVENTS' own settings on the same server.
func benchCommands(ctx context.Context, e *benchEnv) ([]Figure, error) {
	raw, err := rawPublishRate(ctx, e)
	if err != nil {
		return nil, err
	}
	n := 0
	start := time.Now()
	for time.Since(start) < e.sizes.cmdFor {
		body := fmt.Appendf(nil, `{"name":"bpol-%07d","copy_frequency":"30s","retention":"24h"}`, n)
		msg, err := e.Conn().RequestWithContext(ctx, "sr.cmd.policy.create", body)
		if err != nil {
			return nil, err
		}
		if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
			return nil, fmt.Errorf("policy create refused: %s: %s", code, msg.Data)
		}
		n++
	}
	rate := float64(n) / time.Since(start).Seconds()
	return []Figure{{Name: "command_appends", Value: rate, Unit: "cmds/s", Baseline: raw,
		BaselineName: "raw JetStream publish/s", Ratio: rate / raw, Target: "none (reported)", Meets: true,
		Note: fmt.Sprintf("%d commands, one at a time, SyncAlways", n)}}, nil
}

// rawPublishRate publishes event envelopes one at a time for the command
// benchmark's duration to BENCH_RAW, a stream configured as SR_EVENTS.
func rawPublishRate(ctx context.Context, e *benchEnv) (float64, error) {
	js, err := njs.New(e.Conn())
	if err != nil {
		return 0, err
	}
	s, err := js.Stream(ctx, jetstream.DefaultStream)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	cfg := info.Config
	cfg.Name, cfg.Subjects, cfg.Description = "BENCH_RAW", []string{"bench.raw.>"}, "siterecovery bench baseline"
	if _, err := js.CreateStream(ctx, cfg); err != nil {
		return 0, fmt.Errorf("baseline stream: %w", err)
	}
	payload, err := events.Encode(events.Meta{At: time.Now(), CommandID: "bench-0000000001", CorrelationID: "bench-0000000001",
		Actor: "bench"}, events.PolicyCreatedData{Name: "bpol-0000000", PolicySettings: replaySettings})
	if err != nil {
		return 0, err
	}
	n := 0
	start := time.Now()
	for time.Since(start) < e.sizes.cmdFor {
		if _, err := js.Publish(ctx, fmt.Sprintf("bench.raw.policy.p%d.policy_created", n), payload); err != nil {
			return 0, err
		}
		n++
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// replayBatch is the projections' catch-up batch: the raw baseline puts
// in transactions of the same size.
const replayBatch = 4096

// benchReplay replays a pre-filled in-memory log of realistic events (VMs
// created, enabled, initially replicated, then recovery points every cycle,
// pruned by retention) into a fresh projections file, against raw bbolt puts
// of values of the events' sizes in transactions of the projections' batch.
func benchReplay(ctx context.Context, e *benchEnv) ([]Figure, error) {
	log, sizes, err := replayLog(ctx, e.sizes.replayEvents)
	if err != nil {
		return nil, err
	}
	dir, err := e.scratch("replay")
	if err != nil {
		return nil, err
	}
	replay, err := timed(func() error {
		s, err := projections.Open(ctx, filepath.Join(dir, "projections.db"), log, zerolog.Nop())
		if err != nil {
			return err
		}
		last, err := log.LastSeq(ctx)
		return errors.Join(err, s.WaitFor(ctx, last), s.Close())
	})
	if err != nil {
		return nil, err
	}
	raw, err := timed(func() error { return rawPuts(filepath.Join(dir, "raw.db"), sizes) })
	if err != nil {
		return nil, err
	}
	n := float64(len(sizes))
	f := Figure{Name: "projection_replay", Value: n / replay.Seconds(), Unit: "events/s", Baseline: n / raw.Seconds(),
		BaselineName: "raw bbolt puts/s", Ratio: raw.Seconds() / replay.Seconds(),
		Target: "value >= 16667 events/s (1,000,000 events in 60 s)",
		Note:   fmt.Sprintf("%d events into a fresh file; raw puts in transactions of %d", len(sizes), replayBatch)}
	f.Meets = f.Value >= 1e6/60
	return []Figure{f}, nil
}

// replayLog builds an in-memory log of n events of 200 VMs and returns the
// envelope size of each event.
func replayLog(ctx context.Context, n int) (*events.MemLog, []int, error) {
	g := &logGen{log: events.NewMemLog(), last: map[events.Aggregate]uint64{}, at: time.Now().Add(-24 * time.Hour)}
	g.fabric(ctx)
	const vms = 200
	for i := range vms {
		g.vm(ctx, fmt.Sprintf("vm%03d", i))
	}
	for c := 0; g.n < n && g.err == nil; c++ {
		name := fmt.Sprintf("vm%03d", c%vms)
		cycle := c / vms
		var d events.Data = events.RecoveryPointCreatedData{ID: fmt.Sprintf("rp-%06d", cycle), Time: g.at,
			Cycle: uint64(cycle), Epoch: 1, Bytes: 1 << 20, Roots: map[string]string{"d0": "b3a1c2d4e5f60718"}}
		if cycle >= 120 && cycle%10 == 0 { // retention: an hour of 30 s cycles
			ids := make([]string, 10)
			for j := range ids {
				ids[j] = fmt.Sprintf("rp-%06d", cycle-120+j)
			}
			d = events.RecoveryPointsPrunedData{IDs: ids}
		}
		g.emit(ctx, events.VMAgg(name), d)
	}
	return g.log, g.sizes, g.err
}

// logGen appends generated events to a MemLog, each as its own command.
type logGen struct {
	log   *events.MemLog
	last  map[events.Aggregate]uint64
	at    time.Time
	n     int
	sizes []int
	err   error
}

func (g *logGen) emit(ctx context.Context, agg events.Aggregate, d events.Data) {
	if g.err != nil {
		return
	}
	g.n++
	g.at = g.at.Add(time.Second)
	id := fmt.Sprintf("gen-%08d", g.n)
	meta := events.Meta{At: g.at, CommandID: id, CorrelationID: id, Actor: "bench"}
	res, err := g.log.Append(ctx, agg, g.last[agg], meta, d)
	if err != nil {
		g.err = err
		return
	}
	g.last[agg] = res.Seqs[len(res.Seqs)-1]
	raw, err := events.Encode(meta, d)
	g.err = err
	g.sizes = append(g.sizes, len(raw))
}

var replaySettings = events.PolicySettings{CopyFrequency: events.Duration(30 * time.Second),
	Retention: events.Duration(time.Hour), AppConsistentEvery: events.Duration(4 * time.Hour),
	RPOThreshold: events.Duration(5 * time.Minute)}

func (g *logGen) fabric(ctx context.Context) {
	g.emit(ctx, events.SiteAgg("primary"), events.SiteRegisteredData{Name: "primary"})
	g.emit(ctx, events.SiteAgg("secondary"), events.SiteRegisteredData{Name: "secondary"})
	g.emit(ctx, events.HostAgg("hv01"), events.HostRegisteredData{Name: "hv01", Site: "primary"})
	g.emit(ctx, events.HostAgg("hv02"), events.HostRegisteredData{Name: "hv02", Site: "secondary"})
	g.emit(ctx, events.CloudAgg("gold"), events.CloudCreatedData{Name: "gold", Site: "primary", Hosts: []string{"hv01"}})
	g.emit(ctx, events.CloudAgg("gold-dr"), events.CloudCreatedData{Name: "gold-dr", Site: "secondary", Hosts: []string{"hv02"}})
	g.emit(ctx, events.PolicyAgg("p30"), events.PolicyCreatedData{Name: "p30", PolicySettings: replaySettings})
	g.emit(ctx, events.PairingAgg("gold"), events.PairingCreatedData{Name: "gold", SourceCloud: "gold", TargetCloud: "gold-dr", Policy: "p30"})
}

func (g *logGen) vm(ctx context.Context, name string) {
	agg := events.VMAgg(name)
	g.emit(ctx, agg, events.VMCreatedData{Name: name, Host: "hv01", Site: "primary", Cloud: "gold",
		Disks: []events.DiskSpec{{Name: "d0", Size: 1 << 34}}})
	g.emit(ctx, agg, events.ProtectionEnableStartedData{Pairing: "gold", Policy: "p30", Settings: replaySettings,
		SourceHost: "hv01", SourceSite: "primary", RecoveryHost: "hv02", TargetSite: "secondary", TargetCloud: "gold-dr"})
	g.emit(ctx, agg, events.InitialReplicationStartedData{TotalBytes: 1 << 34})
	for p := range 4 {
		g.emit(ctx, agg, events.InitialReplicationProgressData{DoneBytes: int64(p) << 32, TotalBytes: 1 << 34})
	}
	g.emit(ctx, agg, events.InitialReplicationCompletedData{SentBytes: 1 << 34})
}

// rawPuts puts one value per size into a fresh bbolt file, in transactions
// of replayBatch puts.
func rawPuts(path string, sizes []int) error {
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		return err
	}
	val := make([]byte, 8192)
	for i := 0; i < len(sizes); i += replayBatch {
		err := db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists([]byte("raw"))
			if err != nil {
				return err
			}
			for j := i; j < min(i+replayBatch, len(sizes)); j++ {
				if err := b.Put(binary.BigEndian.AppendUint64(nil, uint64(j+1)), val[:min(sizes[j], len(val))]); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return errors.Join(err, db.Close())
		}
	}
	return db.Close()
}

// timed runs fn and returns how long it took.
func timed(fn func() error) (time.Duration, error) {
	start := time.Now()
	err := fn()
	return time.Since(start), err
}

// runTool runs an external command, its output in the error on failure.
func runTool(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %v: %w: %s", name, args, err, bytes.TrimSpace(out))
	}
	return nil
}
