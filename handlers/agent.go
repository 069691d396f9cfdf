package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nuid"
	"github.com/rs/zerolog"

	"github.com/siterecovery/siterecovery/events"
)

// AgentSubjectPrefix is the prefix of the agents' reports:
// sr.cmd.agent.<host>.<verb>.
const AgentSubjectPrefix = "sr.cmd.agent"

// DefaultUnreachableAfter is how long a host may stay silent before it is
// marked unreachable (agents heartbeat every few seconds); a host never
// heard from stays unknown that long after its registration or the control
// plane's start.
const DefaultUnreachableAfter = 15 * time.Second

// maxConflictRetries bounds how often a report is decided again after a
// concurrent append to the same aggregate.
const maxConflictRetries = 8

// AgentResult is the reply to an accepted report.
type AgentResult struct {
	// Seqs are the log sequences of the events the report appended (none
	// when it changed nothing, e.g. a repeat).
	Seqs []uint64 `json:"seqs,omitempty"`
}

// AgentHandlers decide the agents' reports into events and track
// heartbeats. They are safe for concurrent use.
type AgentHandlers struct {
	log       events.Log
	cache     *foldCache
	logger    zerolog.Logger
	threshold time.Duration
	started   time.Time

	mu   sync.Mutex
	seen map[string]time.Time // host → last heartbeat
}

// NewAgentHandlers returns handlers appending to log; a host silent for
// longer than unreachableAfter (DefaultUnreachableAfter if 0) is marked
// unreachable by Sweep.
func NewAgentHandlers(log events.Log, unreachableAfter time.Duration, logger zerolog.Logger) *AgentHandlers {
	if unreachableAfter <= 0 {
		unreachableAfter = DefaultUnreachableAfter
	}
	return &AgentHandlers{
		log: log, cache: newFoldCache(log, foldCacheSize), threshold: unreachableAfter, started: time.Now(), seen: map[string]time.Time{},
		logger: logger.With().Str("component", "agent-reports").Logger(),
	}
}

// AgentVerbs lists the verbs AddEndpoints serves.
var AgentVerbs = []string{
	AgentHeartbeat, AgentDiskProvisioned, AgentIRProgress, AgentIRCompleted,
	AgentRecoveryPoint, AgentPointsPruned, AgentError, AgentDisabled,
}

// AddEndpoints adds one endpoint per verb, subject sr.cmd.agent.*.<verb>,
// to svc. Heartbeats reach every instance of the service (no queue group),
// so that each instance's sweeper knows when every host was last heard;
// the log's optimistic concurrency keeps the transition events single.
func (a *AgentHandlers) AddEndpoints(ctx context.Context, svc micro.Service) error {
	for _, verb := range AgentVerbs {
		h := micro.ContextHandler(ctx, a.serve)
		opts := []micro.EndpointOpt{micro.WithEndpointSubject(AgentSubjectPrefix + ".*." + verb)}
		if verb == AgentHeartbeat {
			opts = append(opts, micro.WithEndpointQueueGroupDisabled())
		}
		if err := svc.AddEndpoint("agent_"+verb, h, opts...); err != nil {
			return fmt.Errorf("agent endpoint %s: %w", verb, err)
		}
	}
	return nil
}

func (a *AgentHandlers) serve(ctx context.Context, req micro.Request) {
	host, verb, err := ParseAgentSubject(req.Subject())
	var res AgentResult
	if err == nil {
		res, err = a.Handle(ctx, host, verb, req.Data())
	}
	if err != nil {
		a.logger.Debug().Err(err).Str("subject", req.Subject()).Msg("agent report refused")
		respondError(req, err)
		return
	}
	if err := req.RespondJSON(res); err != nil {
		a.logger.Warn().Err(err).Str("subject", req.Subject()).Msg("reply to agent report")
	}
}

// respondError replies {"error": {"code", "message"}} with the micro error
// headers set.
func respondError(req micro.Request, err error) {
	code := Code(err)
	body, _ := json.Marshal(map[string]any{"error": map[string]string{"code": code, "message": err.Error()}})
	_ = req.Error(code, err.Error(), body)
}

// ParseAgentSubject splits sr.cmd.agent.<host>.<verb>.
func ParseAgentSubject(subject string) (host, verb string, err error) {
	rest, ok := strings.CutPrefix(subject, AgentSubjectPrefix+".")
	host, verb, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 {
		return "", "", invalidArg("subject %q is not %s.<host>.<verb>", subject, AgentSubjectPrefix)
	}
	if err := events.ValidateToken("host", host); err != nil {
		return "", "", err
	}
	return host, verb, nil
}

// Handle decides one report of host and appends its events. It returns an
// error matching events.ErrInvalidArgument for an unknown verb or a body that
// does not decode, ErrUnauthorized when host may not report for the VM, and
// the domain errors of the decide functions.
func (a *AgentHandlers) Handle(ctx context.Context, host, verb string, body []byte) (AgentResult, error) {
	if verb == AgentHeartbeat {
		var r HeartbeatReport
		if err := decodeReport(body, &r); err != nil {
			return AgentResult{}, err
		}
		return a.heartbeat(ctx, host, r)
	}
	return a.handleVM(ctx, host, verb, body)
}

func (a *AgentHandlers) handleVM(ctx context.Context, host, verb string, body []byte) (AgentResult, error) {
	var head struct {
		CommandID string `json:"command_id"`
		VM        string `json:"vm"`
	}
	if err := decodeReport(body, &head); err != nil {
		return AgentResult{}, err
	}
	if err := events.ValidateToken("vm", head.VM); err != nil {
		return AgentResult{}, err
	}
	decide, err := vmDecider(verb, host, body)
	if err != nil {
		return AgentResult{}, err
	}
	return a.appendVM(ctx, host, head.VM, head.CommandID, decide)
}

// vmDecider decodes body for verb and returns the decision over the VM.
func vmDecider(verb, host string, body []byte) (func(events.VM) ([]events.Data, error), error) {
	switch verb {
	case AgentDiskProvisioned:
		return decider(body, host, DecideDiskProvisioned)
	case AgentIRProgress:
		return decider(body, host, DecideIRProgress)
	case AgentIRCompleted:
		return decider(body, host, DecideIRCompleted)
	case AgentRecoveryPoint:
		return decider(body, host, DecideRecoveryPoint)
	case AgentPointsPruned:
		return decider(body, host, DecidePointsPruned)
	case AgentError:
		return decider(body, host, DecideError)
	case AgentDisabled:
		return decider(body, host, DecideDisabled)
	}
	return nil, invalidArg("unknown agent report %q", verb)
}

func decider[R any](body []byte, host string, decide func(events.VM, string, R) ([]events.Data, error)) (func(events.VM) ([]events.Data, error), error) {
	var r R
	if err := decodeReport(body, &r); err != nil {
		return nil, err
	}
	return func(vm events.VM) ([]events.Data, error) { return decide(vm, host, r) }, nil
}

func decodeReport(body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return invalidArg("report body: %v", err)
	}
	return nil
}

// appendVM loads the VM, decides and appends, deciding again after a
// conflict.
func (a *AgentHandlers) appendVM(ctx context.Context, host, name, commandID string, decide func(events.VM) ([]events.Data, error)) (AgentResult, error) {
	agg := events.VMAgg(name)
	return a.appendAgg(ctx, host, agg, commandID, func(cur aggState) ([]events.Data, error) {
		return decide(cur.View.VM)
	})
}

func (a *AgentHandlers) appendAgg(ctx context.Context, host string, agg events.Aggregate, commandID string,
	decide func(aggState) ([]events.Data, error)) (AgentResult, error) {
	if commandID == "" {
		commandID = nuid.Next()
	}
	meta := events.Meta{CommandID: commandID, CorrelationID: commandID, Actor: "agent:" + host}
	for range maxConflictRetries {
		cur, err := a.cache.load(ctx, agg)
		if err != nil {
			return AgentResult{}, fmt.Errorf("load %s: %w", agg, err)
		}
		evs, err := decide(cur)
		if err != nil || len(evs) == 0 {
			return AgentResult{}, err
		}
		meta.At = time.Now().UTC()
		res, err := a.log.Append(ctx, agg, cur.Seq, meta, evs...)
		if errors.Is(err, events.ErrConflict) {
			continue
		}
		if err != nil {
			return AgentResult{}, fmt.Errorf("append to %s: %w", agg, err)
		}
		return AgentResult{Seqs: res.Seqs}, nil
	}
	return AgentResult{}, fmt.Errorf("append to %s: still conflicting after %d tries: %w", agg, maxConflictRetries, events.ErrConflict)
}

func (a *AgentHandlers) heartbeat(ctx context.Context, host string, r HeartbeatReport) (AgentResult, error) {
	now := time.Now()
	a.mu.Lock()
	a.seen[host] = now
	a.mu.Unlock()
	return a.appendAgg(ctx, host, events.HostAgg(host), "", func(cur aggState) ([]events.Data, error) {
		return DecideHeartbeat(cur.Host.Host, host, r, now)
	})
}

// Sweep decides the reachability of the hosts heard since NewAgentHandlers
// and of names (e.g. every registered host from a read model) with
// DecideSweep: a host heard recently becomes reachable (a heartbeat that
// came before its registration), one silent past the threshold (never heard:
// since the handlers' start or its registration) unreachable. Errors are
// joined; one host's failure does not stop the others.
func (a *AgentHandlers) Sweep(ctx context.Context, names ...string) error {
	now := time.Now()
	heard := a.heard(names)
	var errs []error
	for host, t := range heard {
		w := HostWatch{Heard: t, Watching: a.started}
		_, err := a.appendAgg(ctx, "control", events.HostAgg(host), "", func(cur aggState) ([]events.Data, error) {
			return DecideSweep(cur.Host.Host, w, now, a.threshold), nil
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("host %s: %w", host, err))
		}
	}
	return errors.Join(errs...)
}

// heard maps every host heard and every one of names to its last heartbeat
// (the zero time for a host not heard since the handlers' start).
func (a *AgentHandlers) heard(names []string) map[string]time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]time.Time, len(a.seen)+len(names))
	for h, t := range a.seen {
		out[h] = t
	}
	for _, n := range names {
		if _, ok := out[n]; !ok {
			out[n] = time.Time{}
		}
	}
	return out
}

// RunSweeper calls Sweep every quarter of the threshold until ctx is done;
// hosts, if not nil, names the registered hosts at each sweep.
func (a *AgentHandlers) RunSweeper(ctx context.Context, hosts func() []string) {
	t := time.NewTicker(a.threshold / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var names []string
		if hosts != nil {
			names = hosts()
		}
		if err := a.Sweep(ctx, names...); err != nil && ctx.Err() == nil {
			a.logger.Warn().Err(err).Msg("host reachability sweep")
		}
	}
}
