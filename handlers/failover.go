package handlers

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/agentproto"
)

// FailoverReports decide the agents' failover reports
// (agentproto.FailoverVerbs) into VM events under the operation's job. They
// are an Extension of the Service: svc.Extend(NewFailoverReports(log,
// logger)). Safe for concurrent use.
type FailoverReports struct {
	log    events.Log
	cache  *foldCache
	rm     ReadModel
	logger zerolog.Logger
}

// NewFailoverReports returns the report handlers appending to log. rm (the
// service's read model) answers the netmaps query that maps a failed-over
// VM's networks; with a nil rm the log is read whole at each failover.
func NewFailoverReports(log events.Log, rm ReadModel, logger zerolog.Logger) *FailoverReports {
	return &FailoverReports{log: log, cache: newFoldCache(log, foldCacheSize), rm: rm, logger: logger.With().Str("component", "failover-reports").Logger()}
}

// endpoints are one endpoint per failover verb, subject
// sr.cmd.agent.*.<verb>, each report handled within DefaultTimeout.
func (f *FailoverReports) endpoints() []endpoint {
	return reportEndpoints(agentproto.FailoverVerbs, f.logger, DefaultTimeout, f.Handle)
}

// Handle decides one report of host and appends its events. It returns an
// error matching events.ErrInvalidArgument for an unknown verb or a bad
// body, ErrUnauthorized when host plays no part in the operation, and
// events.ErrInvalidState when the VM is in no operation the report fits.
func (f *FailoverReports) Handle(ctx context.Context, host, verb string, body []byte) (agentproto.Reply, error) {
	var head agentproto.ReportHead
	if err := decodeReport(body, &head); err != nil {
		return agentproto.Reply{}, err
	}
	if err := firstErr(events.ValidateToken("vm", head.VM), optionalToken("job", head.Job), optionalToken("command_id", head.CommandID)); err != nil {
		return agentproto.Reply{}, err
	}
	decide, err := f.decider(ctx, verb, host, body)
	if err != nil {
		return agentproto.Reply{}, err
	}
	return f.append(ctx, host, head, decide)
}

type viewDecider func(vmView) (decision, error)

func (f *FailoverReports) decider(ctx context.Context, verb, host string, body []byte) (viewDecider, error) {
	switch verb {
	case agentproto.VerbVMStopped:
		return reportDecider(body, host, decideVMStopped)
	case agentproto.VerbFailoverReady:
		nets, err := f.netmaps(ctx)
		if err != nil {
			return nil, err
		}
		return reportDecider(body, host, func(v vmView, h string, r agentproto.FailoverReadyReport) (decision, error) {
			return decideFailoverReady(v, h, r, nets)
		})
	case agentproto.VerbTestFailoverReady:
		return reportDecider(body, host, decideTestFailoverReady)
	case agentproto.VerbTestCleanupDone:
		return reportDecider(body, host, decideTestCleanupDone)
	case agentproto.VerbResyncProgress:
		return reportDecider(body, host, decideResyncProgress)
	case agentproto.VerbResyncCompleted:
		return reportDecider(body, host, decideResyncCompleted)
	case agentproto.VerbDivergence:
		return reportDecider(body, host, decideDivergence)
	}
	return nil, invalidArg("unknown agent report %q", verb)
}

func reportDecider[R any](body []byte, host string, decide func(vmView, string, R) (decision, error)) (viewDecider, error) {
	var r R
	if err := decodeReport(body, &r); err != nil {
		return nil, err
	}
	return func(v vmView) (decision, error) { return decide(v, host, r) }, nil
}

// append loads the VM, decides and appends under the decision's job,
// deciding again after a conflict.
func (f *FailoverReports) append(ctx context.Context, host string, head agentproto.ReportHead, decide viewDecider) (agentproto.Reply, error) {
	agg := events.VMAgg(head.VM)
	commandID := head.CommandID
	if commandID == "" {
		commandID = newID()
	}
	return appendDecided(ctx, f.log, f.cache, agg, func(cur aggState) (reportAppend, error) {
		v := cur.View
		if !v.Exists() {
			return reportAppend{}, fmt.Errorf("vm %s: %w", head.VM, events.ErrNotFound)
		}
		if res, ok, err := handledBefore(cur.Marks, commandID); ok || err != nil {
			return reportAppend{reply: agentproto.Reply{Seqs: res.seqs}}, err
		}
		d, err := decide(v)
		if err != nil {
			return reportAppend{}, err
		}
		meta := events.Meta{At: time.Now().UTC(), CommandID: commandID, CorrelationID: d.job, Actor: "agent:" + host}
		if meta.CorrelationID == "" {
			meta.CorrelationID = commandID
		}
		return reportAppend{version: v.Version, meta: meta, evs: d.evs}, nil
	})
}

// netmaps reads every live network mapping: source network → target, from
// the read model once it has applied the whole log as of now.
func (f *FailoverReports) netmaps(ctx context.Context) (map[string]string, error) {
	if f.rm == nil {
		return f.scanNetmaps(ctx)
	}
	last, err := f.log.LastSeq(ctx)
	if err != nil {
		return nil, err
	}
	if err := f.rm.WaitFor(ctx, last); err != nil {
		return nil, fmt.Errorf("network mappings: %w", err)
	}
	ans, err := f.rm.Query(ctx, "netmaps", json.RawMessage(`{}`))
	if err != nil {
		return nil, fmt.Errorf("network mappings: %w", err)
	}
	raw, err := json.Marshal(ans)
	if err != nil {
		return nil, fmt.Errorf("network mappings: %w", err)
	}
	var maps []struct {
		SourceNetwork string `json:"source_network"`
		TargetNetwork string `json:"target_network"`
	}
	if err := json.Unmarshal(raw, &maps); err != nil {
		return nil, fmt.Errorf("network mappings: %w", err)
	}
	out := map[string]string{}
	for _, n := range maps {
		out[n.SourceNetwork] = n.TargetNetwork
	}
	return out, nil
}

// scanNetmaps reads every live network mapping from the whole log.
func (f *FailoverReports) scanNetmaps(ctx context.Context) (map[string]string, error) {
	maps := map[string]*events.Netmap{}
	err := scanKind(ctx, f.log, events.KindNetmap, func(r events.Record) {
		n := maps[r.Aggregate.ID]
		if n == nil {
			n = &events.Netmap{}
			maps[r.Aggregate.ID] = n
		}
		n.Apply(r)
	})
	out := map[string]string{}
	for _, n := range maps {
		if n.Exists() {
			out[n.SourceNetwork] = n.TargetNetwork
		}
	}
	return out, err
}
