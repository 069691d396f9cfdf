package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/siterecovery/siterecovery/events"
)

// The health that comes from time rather than from a report: an RPO that
// stays above the policy's threshold (Warning) and a host of the VM's
// replication that stays unreachable (Critical). docs/operations.md "Health and alerts": alerts
// fire on sustained breaches, not one late cycle, and are muted during
// initial replication. Errors reported by agents set Critical themselves
// (agent_decide.go); the monitor never clears a health it did not raise.

// Issue prefixes the monitor owns.
const (
	issueRPO         = "rpo: "
	issueUnreachable = "host_unreachable: "
)

// HealthConfig tunes the HealthMonitor.
type HealthConfig struct {
	// Every is the sweep period (default 2s).
	Every time.Duration
	// DefaultRPOFactor sets the RPO threshold of a policy without one, as a
	// multiple of its copy frequency (default 3), never below MinThreshold.
	DefaultRPOFactor int
	// MinThreshold is the smallest default RPO threshold (default 30s).
	MinThreshold time.Duration
}

func (c HealthConfig) withDefaults() HealthConfig {
	if c.Every <= 0 {
		c.Every = 2 * time.Second
	}
	if c.DefaultRPOFactor <= 0 {
		c.DefaultRPOFactor = 3
	}
	if c.MinThreshold <= 0 {
		c.MinThreshold = 30 * time.Second
	}
	return c
}

// HealthMonitor sweeps the protected VMs and appends health_changed when a
// breach is sustained or over. Several control planes may run one each:
// the same change at the same VM version has the same command id, so it is
// appended once.
type HealthMonitor struct {
	log    events.Log
	cache  *foldCache
	rm     ReadModel
	cfg    HealthConfig
	logger zerolog.Logger

	mu     sync.Mutex
	since  map[string]time.Time // vm → start of its current RPO breach
	cancel context.CancelFunc
	done   chan struct{}
}

// NewHealthMonitor returns a monitor reading rm and appending to log.
func NewHealthMonitor(log events.Log, rm ReadModel, cfg HealthConfig, logger zerolog.Logger) *HealthMonitor {
	return &HealthMonitor{log: log, cache: newFoldCache(log, foldCacheSize), rm: rm, cfg: cfg.withDefaults(), since: map[string]time.Time{},
		logger: logger.With().Str("component", "health").Logger()}
}

// Open starts the sweeps.
func (m *HealthMonitor) Open(ctx context.Context) error {
	ctx, m.cancel = context.WithCancel(context.WithoutCancel(ctx))
	m.done = make(chan struct{})
	go m.run(ctx)
	return nil
}

// Close stops the sweeps and waits for the current one; safe twice.
func (m *HealthMonitor) Close(context.Context) error {
	if m.cancel != nil {
		m.cancel()
		<-m.done
		m.cancel = nil
	}
	return nil
}

func (m *HealthMonitor) run(ctx context.Context) {
	defer close(m.done)
	t := time.NewTicker(m.cfg.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := m.Sweep(ctx, time.Now()); err != nil && ctx.Err() == nil {
			m.logger.Warn().Err(err).Msg("health sweep")
		}
	}
}

// healthVM is what a sweep reads of a VM.
type healthVM struct {
	Name         string   `json:"name"`
	State        string   `json:"protection_state"`
	Health       string   `json:"health"`
	Issues       []string `json:"issues"`
	RPOSeconds   *int64   `json:"rpo_seconds"`
	Policy       string   `json:"policy"`
	SourceHost   string   `json:"source_host"`
	RecoveryHost string   `json:"recovery_host"`
}

type healthPolicy struct {
	Name          string          `json:"name"`
	CopyFrequency events.Duration `json:"copy_frequency"`
	RPOThreshold  events.Duration `json:"rpo_threshold"`
}

type healthHost struct {
	Name         string              `json:"name"`
	Reachability events.Reachability `json:"reachability"`
}

// Sweep looks at every VM once, as of now.
func (m *HealthMonitor) Sweep(ctx context.Context, now time.Time) error {
	var vms []healthVM
	var policies []healthPolicy
	var hosts []healthHost
	for _, q := range []struct {
		name string
		out  any
	}{{"vms", &vms}, {"policies", &policies}, {"hosts", &hosts}} {
		if err := m.query(ctx, q.name, q.out); err != nil {
			return err
		}
	}
	thresholds := map[string]time.Duration{}
	for _, p := range policies {
		thresholds[p.Name] = m.threshold(p)
	}
	down := map[string]bool{}
	for _, h := range hosts {
		// Unknown is not down: a host just registered, or a control
		// plane just started, has not had the threshold to hear from it.
		down[h.Name] = h.Reachability == events.ReachabilityUnreachable
	}
	var errs []error
	for _, v := range vms {
		if err := m.sweepVM(ctx, v, thresholds[v.Policy], down, now); err != nil {
			errs = append(errs, fmt.Errorf("vm %s: %w", v.Name, err))
		}
	}
	return errors.Join(errs...)
}

func (m *HealthMonitor) query(ctx context.Context, name string, out any) error {
	res, err := m.rm.Query(ctx, name, nil)
	if err != nil {
		return err
	}
	raw, err := json.Marshal(res)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, out)
}

func (m *HealthMonitor) threshold(p healthPolicy) time.Duration {
	if p.RPOThreshold > 0 {
		return p.RPOThreshold.D()
	}
	return max(m.cfg.MinThreshold, time.Duration(m.cfg.DefaultRPOFactor)*p.CopyFrequency.D())
}

// sweepVM decides the monitor's health of one VM and appends a change.
func (m *HealthMonitor) sweepVM(ctx context.Context, v healthVM, threshold time.Duration, down map[string]bool, now time.Time) error {
	if v.State != string(events.Protected) {
		m.forget(v.Name)
		return m.clear(ctx, v) // muted outside Protected: IR, paused, failovers
	}
	var issues []string
	for _, h := range []string{v.SourceHost, v.RecoveryHost} {
		if h != "" && down[h] {
			issues = append(issues, issueUnreachable+h)
		}
	}
	if len(issues) > 0 {
		return m.raise(ctx, v, events.HealthCritical, issues)
	}
	if m.rpoBreach(v, threshold, now) {
		return m.raise(ctx, v, events.HealthWarning, []string{fmt.Sprintf("%sRPO %ds above the threshold %s", issueRPO, *v.RPOSeconds, threshold)})
	}
	return m.clear(ctx, v)
}

// rpoBreach reports an RPO above threshold for at least one more sweep
// period (sustained, not one late cycle).
func (m *HealthMonitor) rpoBreach(v healthVM, threshold time.Duration, now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if threshold <= 0 || v.RPOSeconds == nil || time.Duration(*v.RPOSeconds)*time.Second <= threshold {
		delete(m.since, v.Name)
		return false
	}
	start, ok := m.since[v.Name]
	if !ok {
		m.since[v.Name] = now
		return false
	}
	return now.Sub(start) >= m.cfg.Every
}

func (m *HealthMonitor) forget(vm string) {
	m.mu.Lock()
	delete(m.since, vm)
	m.mu.Unlock()
}

// raise sets health with the monitor's issues unless the VM already is at
// least that bad.
func (m *HealthMonitor) raise(ctx context.Context, v healthVM, health string, issues []string) error {
	if severity(v.Health) >= severity(health) {
		return nil
	}
	return m.change(ctx, v.Name, health, issues)
}

// clear returns to Normal a health that only the monitor's issues hold up.
func (m *HealthMonitor) clear(ctx context.Context, v healthVM) error {
	if v.Health == events.HealthNormal || v.Health == "" || len(v.Issues) == 0 {
		return nil
	}
	for _, is := range v.Issues {
		if !strings.HasPrefix(is, issueRPO) && !strings.HasPrefix(is, issueUnreachable) {
			return nil
		}
	}
	return m.change(ctx, v.Name, events.HealthNormal, nil)
}

func severity(health string) int {
	switch health {
	case events.HealthCritical:
		return 2
	case events.HealthWarning:
		return 1
	}
	return 0
}

// change appends health_changed to the VM at its current version, once.
func (m *HealthMonitor) change(ctx context.Context, vm, health string, issues []string) error {
	cur, err := m.cache.load(ctx, events.VMAgg(vm))
	if err != nil {
		return err
	}
	state := cur.View.VM
	if !state.Exists() || state.Health == health {
		return nil
	}
	meta := events.Meta{
		CommandID: fmt.Sprintf("health-%s-%d-%s", vm, state.Version, health),
		Actor:     "health-monitor",
	}
	_, err = m.log.Append(ctx, events.VMAgg(vm), state.Version, meta, events.HealthChangedData{Health: health, Issues: issues})
	if errors.Is(err, events.ErrConflict) {
		return nil // the VM moved on; the next sweep decides again
	}
	if err == nil {
		m.logger.Info().Str("vm", vm).Str("health", health).Strs("issues", issues).Msg("health changed")
	}
	return err
}
