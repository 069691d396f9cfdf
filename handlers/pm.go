package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/siterecovery/siterecovery/events"
)

// Defaults of PMConfig.
const (
	// DefaultFailoverTimeout bounds a (test) failover from its start to the
	// recovery host serving the VM.
	DefaultFailoverTimeout = 10 * time.Minute
	// DefaultScriptTimeout bounds a recovery plan's script.
	DefaultScriptTimeout = 600 * time.Second
	// DefaultPMTick is how often deadlines are checked.
	DefaultPMTick = time.Second
	// planSweepInterval is how often every running plan job is reconciled
	// whole, whatever the events: a reaction that failed is tried again.
	planSweepInterval = 10 * time.Second
)

// pmCheckpointFile is the process manager's checkpoint under PMConfig.Dir.
const pmCheckpointFile = "process-manager.json"

// pmActor is the actor of the events the process manager appends.
const pmActor = "control-plane"

// PMConfig configures a process manager; zero values take the defaults.
type PMConfig struct {
	// Dir holds the checkpoint (the last handled sequence and the pending
	// deadlines and plan jobs), written after each batch of events. Empty:
	// no checkpoint, the log is folded from 1 at each Open.
	Dir string
	// FailoverTimeout bounds planned, unplanned and test failovers.
	FailoverTimeout time.Duration
	// ScriptTimeout bounds a plan script whose group sets none.
	ScriptTimeout time.Duration
	// Tick is how often deadlines are checked.
	Tick time.Duration
	// UnreachableAfter is the agents' unreachable threshold
	// (DefaultUnreachableAfter if 0): how long a planned failover waits for
	// a source host whose reachability is not known (docs/operations.md).
	UnreachableAfter time.Duration
}

func (c PMConfig) withDefaults() PMConfig {
	if c.FailoverTimeout <= 0 {
		c.FailoverTimeout = DefaultFailoverTimeout
	}
	if c.ScriptTimeout <= 0 {
		c.ScriptTimeout = DefaultScriptTimeout
	}
	if c.Tick <= 0 {
		c.Tick = DefaultPMTick
	}
	if c.UnreachableAfter <= 0 {
		c.UnreachableAfter = DefaultUnreachableAfter
	}
	return c
}

// deadline is a pending (test) failover, or a plan script, that the process
// manager times out.
type deadline struct {
	VM   string `json:"vm,omitempty"`
	Kind string `json:"kind"`
	// Start is the sequence of the event that started the operation.
	Start    uint64    `json:"start"`
	At       time.Time `json:"at"`
	Mode     string    `json:"mode,omitempty"`
	FromHost string    `json:"from_host,omitempty"`
	// A script's plan, job, group, action and the command id of its result.
	Plan    string `json:"plan,omitempty"`
	Job     string `json:"job,omitempty"`
	Group   int    `json:"group,omitempty"`
	Action  string `json:"action,omitempty"`
	DoneCmd string `json:"done_cmd,omitempty"`
}

// key names the deadline in pmState.Deadlines.
func (d deadline) key() string {
	if d.Kind == deadlineScript {
		return deadlineKey(d.Kind, d.Plan+"/"+d.DoneCmd)
	}
	return deadlineKey(d.Kind, d.VM)
}

func deadlineKey(kind, id string) string { return kind + "/" + id }

// Deadline kinds.
const (
	deadlineFailover = "failover"
	deadlineTest     = "test"
	deadlineScript   = "script"
	// deadlineSource bounds a planned failover's wait for its source host's
	// first heartbeat.
	deadlineSource = "source"
)

// pmFormat is the format of process-manager.json (docs/reference/files.md):
// 2 adds deadlines of kind "source" (a planned failover waiting for its
// source host's first heartbeat); a file with no format is 1, readable as
// 2. A file of a newer format is not read: the log is folded from 1, as
// without a checkpoint.
const pmFormat = 2

// pmState is what the process manager folds from the log and checkpoints.
type pmState struct {
	Format    int                 `json:"format,omitempty"`
	Seq       uint64              `json:"seq"`
	Deadlines map[string]deadline `json:"deadlines"`
	Reversing map[string]bool     `json:"reversing"`
	Jobs      map[string]string   `json:"jobs"` // plan job → plan
}

func newPMState() pmState {
	return pmState{Deadlines: map[string]deadline{}, Reversing: map[string]bool{}, Jobs: map[string]string{}}
}

// PM is the process manager: it follows the event log and drives the
// automatic steps of failover, commit, reverse replication, test failover
// and recovery plans (timeouts, reverse replication after a planned
// failover's commit, plan groups, scripts and manual actions).
//
// Several PMs (serve instances) may follow one log: every reaction is
// decided against the aggregate as loaded, appended with optimistic
// concurrency, under a command id derived from the sequence of the event
// that triggered it (pm-<seq>-<step>), so a reaction is appended once
// whoever makes it. A plan script runs on the PM whose plan_action_started
// was appended first.
type PM struct {
	log    events.Log
	cache  *foldCache
	cfg    PMConfig
	logger zerolog.Logger

	mu      sync.Mutex
	st      pmState
	fired   map[string]bool               // deadlines whose reaction was appended
	scripts map[string]context.CancelFunc // plan job → cancel of its running scripts
	cancel  context.CancelFunc
	opened  bool
	// since is when Open started following: the control plane has watched
	// the agents' heartbeats since about then.
	since time.Time
	wg    sync.WaitGroup
}

// NewPM returns a process manager over log.
func NewPM(log events.Log, cfg PMConfig, logger zerolog.Logger) *PM {
	return &PM{
		log: log, cache: newFoldCache(log, foldCacheSize), cfg: cfg.withDefaults(), logger: logger.With().Str("component", "process-manager").Logger(),
		st: newPMState(), fired: map[string]bool{}, scripts: map[string]context.CancelFunc{},
	}
}

// Open loads the checkpoint and starts following the log from there. It
// fails when already open or when the checkpoint cannot be read.
func (p *PM) Open(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("process manager: open: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.opened {
		return fmt.Errorf("process manager: already open")
	}
	st, err := p.loadCheckpoint()
	if err != nil {
		return err
	}
	p.st, p.opened, p.since = st, true, time.Now()
	runCtx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.wg.Add(2)
	go p.follow(runCtx)
	go p.tick(runCtx)
	return nil
}

// Close stops following, cancels running scripts and waits for every
// goroutine until ctx ends. It is safe to call twice.
func (p *PM) Close(ctx context.Context) error {
	p.mu.Lock()
	cancel := p.cancel
	p.cancel = nil
	p.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	if err := waitCtx(ctx, &p.wg); err != nil {
		return fmt.Errorf("process manager: close: %w", err)
	}
	return nil
}

// waitCtx waits for wg, or returns ctx's error once ctx ends first.
func waitCtx(ctx context.Context, wg *sync.WaitGroup) error {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// follow handles the log's events in order from the checkpoint.
func (p *PM) follow(ctx context.Context) {
	defer p.wg.Done()
	for ctx.Err() == nil {
		if err := p.followOnce(ctx); err != nil && ctx.Err() == nil {
			p.logger.Error().Err(err).Msg("following the event log; retrying")
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

func (p *PM) followOnce(ctx context.Context) error {
	p.mu.Lock()
	from := p.st.Seq + 1
	p.mu.Unlock()
	cur, err := p.log.Follow(ctx, from)
	if err != nil {
		return err
	}
	defer cur.Close()
	for {
		recs, err := cur.Next(ctx, 256)
		if err != nil {
			return err
		}
		for _, r := range recs {
			p.handle(ctx, r)
		}
		if err := p.saveCheckpoint(recs[len(recs)-1].Seq); err != nil {
			p.logger.Error().Err(err).Msg("process manager checkpoint not written")
		}
	}
}

// tick runs the deadlines' reactions.
func (p *PM) tick(ctx context.Context) {
	defer p.wg.Done()
	t := time.NewTicker(p.cfg.Tick)
	defer t.Stop()
	swept := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			p.expire(ctx, now)
			if now.Sub(swept) >= planSweepInterval {
				p.sweepPlans(ctx)
				swept = now
			}
		}
	}
}

// sweepPlans reconciles every running plan job whole.
func (p *PM) sweepPlans(ctx context.Context) {
	p.mu.Lock()
	plans := map[string]bool{}
	for _, plan := range p.st.Jobs {
		plans[plan] = true
	}
	p.mu.Unlock()
	for plan := range plans {
		if err := p.reconcilePlan(ctx, plan, planScope{}); err != nil && ctx.Err() == nil {
			p.logger.Error().Err(err).Str("plan", plan).Msg("plan sweep")
		}
	}
}

func (p *PM) expire(ctx context.Context, now time.Time) {
	p.mu.Lock()
	var due []deadline
	for key, d := range p.st.Deadlines {
		if !p.fired[key] && now.After(d.At) {
			due = append(due, d)
		}
	}
	p.mu.Unlock()
	for _, d := range due {
		if err := p.timeout(ctx, d); err != nil {
			if ctx.Err() == nil {
				p.logger.Error().Err(err).Str("deadline", d.key()).Msg("timeout not recorded; retrying")
			}
			continue
		}
		p.mu.Lock()
		if cur, ok := p.st.Deadlines[d.key()]; ok && cur.Start == d.Start && cur.At.Equal(d.At) {
			p.fired[d.key()] = true // not when the reaction set the deadline anew
		}
		p.mu.Unlock()
	}
}

func (p *PM) checkpointPath() string { return filepath.Join(p.cfg.Dir, pmCheckpointFile) }

func (p *PM) loadCheckpoint() (pmState, error) {
	st := newPMState()
	if p.cfg.Dir == "" {
		return st, nil
	}
	if err := os.MkdirAll(p.cfg.Dir, 0o755); err != nil {
		return st, fmt.Errorf("process manager: %w", err)
	}
	raw, err := os.ReadFile(p.checkpointPath())
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("process manager: read checkpoint: %w", err)
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return st, fmt.Errorf("process manager: checkpoint %s: %w", p.checkpointPath(), err)
	}
	if st.Format > pmFormat {
		p.logger.Warn().Int("format", st.Format).Int("want", pmFormat).Str("path", p.checkpointPath()).
			Msg("process manager checkpoint of a newer format: folding the log from the start")
		return newPMState(), nil
	}
	if st.Deadlines == nil {
		st.Deadlines = map[string]deadline{}
	}
	if st.Reversing == nil {
		st.Reversing = map[string]bool{}
	}
	if st.Jobs == nil {
		st.Jobs = map[string]string{}
	}
	return st, nil
}

// saveCheckpoint records seq as handled: temp file, fsync, rename, fsync of
// the directory.
func (p *PM) saveCheckpoint(seq uint64) error {
	p.mu.Lock()
	p.st.Seq = seq
	p.st.Format = pmFormat
	raw, err := json.Marshal(p.st)
	p.mu.Unlock()
	if err != nil || p.cfg.Dir == "" {
		return err
	}
	return writeFileSync(p.checkpointPath(), raw)
}

func writeFileSync(path string, raw []byte) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	_, err = f.Write(raw)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
