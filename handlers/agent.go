package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/agentproto"
)

// DefaultUnreachableAfter is how long a host may stay silent before it is
// marked unreachable (agents heartbeat every few seconds); a host never
// heard from stays unknown that long after its registration or the control
// plane's start.
const DefaultUnreachableAfter = 15 * time.Second

// maxConflictRetries bounds how often a report is decided again after a
// concurrent append to the same aggregate.
const maxConflictRetries = 8

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

// endpoints are one endpoint per replication verb, subject
// sr.cmd.agent.*.<verb>. Heartbeats reach every instance of the service (no
// queue group), so that each instance's sweeper knows when every host was
// last heard; the log's optimistic concurrency keeps the transition events
// single.
func (a *AgentHandlers) endpoints() []endpoint {
	eps := reportEndpoints(agentproto.ReplicationVerbs, a.logger, 0, a.Handle)
	for i := range eps {
		eps[i].everyInstance = eps[i].subject == agentproto.ReportFilter(agentproto.VerbHeartbeat)
	}
	return eps
}

// reportEndpoints are one endpoint per verb, subject sr.cmd.agent.*.<verb>,
// each handled by handle with the host and verb its subject names, within
// timeout (0: none). A refused report is routine (a late or repeated one).
func reportEndpoints(verbs []string, logger zerolog.Logger, timeout time.Duration,
	handle func(ctx context.Context, host, verb string, body []byte) (agentproto.Reply, error)) []endpoint {
	serve := func(ctx context.Context, subject string, body []byte) (any, error) {
		host, verb, err := agentproto.ParseReportSubject(subject)
		if err != nil {
			return nil, err
		}
		res, err := handle(ctx, host, verb, body)
		if err != nil {
			return nil, err
		}
		return res, nil
	}
	eps := make([]endpoint, 0, len(verbs))
	for _, verb := range verbs {
		eps = append(eps, endpoint{name: "agent_" + verb, subject: agentproto.ReportFilter(verb), timeout: timeout,
			routine: true, logger: logger, handle: serve})
	}
	return eps
}

// Handle decides one report of host and appends its events. It returns an
// error matching events.ErrInvalidArgument for an unknown verb or a body that
// does not decode, ErrUnauthorized when host may not report for the VM, and
// the domain errors of the decide functions.
func (a *AgentHandlers) Handle(ctx context.Context, host, verb string, body []byte) (agentproto.Reply, error) {
	if verb == agentproto.VerbHeartbeat {
		var r agentproto.HeartbeatReport
		if err := decodeReport(body, &r); err != nil {
			return agentproto.Reply{}, err
		}
		return a.heartbeat(ctx, host, r)
	}
	return a.handleVM(ctx, host, verb, body)
}

func (a *AgentHandlers) handleVM(ctx context.Context, host, verb string, body []byte) (agentproto.Reply, error) {
	var head struct {
		CommandID string `json:"command_id"`
		VM        string `json:"vm"`
	}
	if err := decodeReport(body, &head); err != nil {
		return agentproto.Reply{}, err
	}
	if err := events.ValidateToken("vm", head.VM); err != nil {
		return agentproto.Reply{}, err
	}
	decide, err := vmDecider(verb, host, body)
	if err != nil {
		return agentproto.Reply{}, err
	}
	return a.appendVM(ctx, host, head.VM, head.CommandID, decide)
}

// vmDecider decodes body for verb and returns the decision over the VM.
func vmDecider(verb, host string, body []byte) (func(events.VM) ([]events.Data, error), error) {
	switch verb {
	case agentproto.VerbDiskProvisioned:
		return decider(body, host, DecideDiskProvisioned)
	case agentproto.VerbIRProgress:
		return decider(body, host, DecideIRProgress)
	case agentproto.VerbIRCompleted:
		return decider(body, host, DecideIRCompleted)
	case agentproto.VerbRecoveryPoint:
		return decider(body, host, DecideRecoveryPoint)
	case agentproto.VerbPointsPruned:
		return decider(body, host, DecidePointsPruned)
	case agentproto.VerbError:
		return decider(body, host, DecideError)
	case agentproto.VerbDisabled:
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
func (a *AgentHandlers) appendVM(ctx context.Context, host, name, commandID string, decide func(events.VM) ([]events.Data, error)) (agentproto.Reply, error) {
	agg := events.VMAgg(name)
	return a.appendAgg(ctx, host, agg, commandID, func(cur aggState) ([]events.Data, error) {
		return decide(cur.View.VM)
	})
}

func (a *AgentHandlers) appendAgg(ctx context.Context, host string, agg events.Aggregate, commandID string,
	decide func(aggState) ([]events.Data, error)) (agentproto.Reply, error) {
	if commandID == "" {
		commandID = newID()
	}
	meta := events.Meta{CommandID: commandID, CorrelationID: commandID, Actor: "agent:" + host}
	return appendDecided(ctx, a.log, a.cache, agg, func(cur aggState) (reportAppend, error) {
		evs, err := decide(cur)
		meta.At = time.Now().UTC()
		return reportAppend{version: cur.Seq, meta: meta, evs: evs}, err
	})
}

// reportAppend is what a report decided on an aggregate's state: the
// events to append on the version they were decided on, under meta; with
// no events nothing is appended and reply is the answer.
type reportAppend struct {
	version uint64
	meta    events.Meta
	evs     []events.Data
	reply   agentproto.Reply
}

// appendDecided loads agg, decides and appends what decide returns,
// deciding again on a fresh load after a conflict, at most
// maxConflictRetries times. An error of decide is returned with its reply.
func appendDecided(ctx context.Context, log events.Log, cache *foldCache, agg events.Aggregate,
	decide func(aggState) (reportAppend, error)) (agentproto.Reply, error) {
	for range maxConflictRetries {
		cur, err := cache.load(ctx, agg)
		if err != nil {
			return agentproto.Reply{}, fmt.Errorf("load %s: %w", agg, err)
		}
		ra, err := decide(cur)
		if err != nil || len(ra.evs) == 0 {
			return ra.reply, err
		}
		res, err := log.Append(ctx, agg, ra.version, ra.meta, ra.evs...)
		if errors.Is(err, events.ErrConflict) {
			continue
		}
		if err != nil {
			return agentproto.Reply{}, fmt.Errorf("append to %s: %w", agg, err)
		}
		return agentproto.Reply{Seqs: res.Seqs}, nil
	}
	return agentproto.Reply{}, fmt.Errorf("append to %s: still conflicting after %d tries: %w", agg, maxConflictRetries, events.ErrConflict)
}

func (a *AgentHandlers) heartbeat(ctx context.Context, host string, r agentproto.HeartbeatReport) (agentproto.Reply, error) {
	now := time.Now()
	a.mu.Lock()
	a.seen[host] = now
	a.mu.Unlock()
	return a.appendAgg(ctx, host, events.HostAgg(host), "", func(cur aggState) ([]events.Data, error) {
		return DecideHeartbeat(cur.Host.Host, host, r, now)
	})
}

// Heard is when this control plane last received a heartbeat from host
// (the zero time: none since NewAgentHandlers). Heartbeats reach every
// instance, so every one knows; the log records only the heartbeat that
// made the host reachable.
func (a *AgentHandlers) Heard(host string) time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.seen[host]
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
