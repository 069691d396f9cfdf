package handlers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/agentproto"
)

// VerifySubject is the command `vm verify` sends.
const VerifySubject = CommandPrefix + "vm.verify"

// VerifyHandlers serve `vm verify` (sr.cmd.vm.verify {vm, wait_ms?}): they
// ask the VM's source agent (agentproto.VerifySubject, answered by
// hostsync) to compare its disks with the replica re-hashed from its images
// at one recovery point, append verification_completed, and on a
// difference raise Critical health (and ResyncRequired when the VM is
// Protected: `vm resync` repairs the replica). An Extension of the
// Service. Safe for concurrent use.
type VerifyHandlers struct {
	log    events.Log
	cache  *foldCache
	agents sourceAgent
	logger zerolog.Logger
}

// sourceAgent asks a VM's source agent to compare the VM's disks with the
// replica (agentproto.VerifySubject). Safe for concurrent use.
type sourceAgent interface {
	// Verify asks host to compare vm now and waits for the outcome until
	// ctx ends. It changes nothing on either side, so a call may be
	// repeated; each compares again. An agent that does not answer (not
	// running, or not serving vm: an agent that is not the VM's source does
	// not subscribe) or answers something that does not decode is an error
	// wrapping ErrUnavailable; a refusal is the reply's Error.
	Verify(ctx context.Context, host, vm string, req agentproto.VerifyRequest) (agentproto.VerifyReply, error)
}

// newVerifyHandlers returns the verify handler appending to log and asking
// agents.
func newVerifyHandlers(log events.Log, agents sourceAgent, logger zerolog.Logger) *VerifyHandlers {
	return &VerifyHandlers{log: log, cache: newFoldCache(log, foldCacheSize), agents: agents, logger: logger.With().Str("component", "verify").Logger()}
}

// verifyRequest is the command's body.
type verifyRequest struct {
	common
	VM string `json:"vm"`
	// WaitMS bounds how long the source agent waits for the replica to
	// reach its latest closed cycle (agentproto.VerifyWait).
	WaitMS int64 `json:"wait_ms,omitempty"`
}

// VerifyResult is the reply: the point compared, equal or not, the
// differing ranges, and the log sequence of the last event appended.
type VerifyResult struct {
	VM        string             `json:"vm"`
	Point     string             `json:"point"`
	Equal     bool               `json:"equal"`
	Differing []events.DiskRange `json:"differing"`
	Seq       uint64             `json:"seq"`
}

// endpoints are the vm_verify endpoint.
func (v *VerifyHandlers) endpoints() []endpoint {
	return []endpoint{{name: "vm_verify", subject: VerifySubject, routine: true, logger: v.logger,
		handle: func(ctx context.Context, _ string, body []byte) (any, error) { return v.Handle(ctx, body) }}}
}

// Handle runs one verify. Errors: invalid_argument for a bad body,
// not_found, invalid_state when the VM is not replicating to a recovery
// host, unavailable when the agent could not compare in time.
func (v *VerifyHandlers) Handle(ctx context.Context, body []byte) (VerifyResult, error) {
	var r verifyRequest
	if err := decodeRequest(body, &r); err != nil {
		return VerifyResult{}, err
	}
	if err := token("vm", r.VM); err != nil {
		return VerifyResult{}, err
	}
	meta, err := newMeta(r.common)
	if err != nil {
		return VerifyResult{}, err
	}
	vm, err := v.loadVM(ctx, r.VM)
	if err != nil {
		return VerifyResult{}, err
	}
	if vm.RecoveryHost == "" || vm.SourceHost == "" {
		return VerifyResult{}, stateErr(&vm, "verify")
	}
	out, err := v.askAgent(ctx, vm, r.WaitMS)
	if err != nil {
		return VerifyResult{}, err
	}
	seq, err := v.record(ctx, meta, r.VM, out)
	if err != nil {
		return VerifyResult{}, err
	}
	return VerifyResult{VM: r.VM, Point: out.Point, Equal: out.Equal, Differing: out.Differing, Seq: seq}, nil
}

func (v *VerifyHandlers) loadVM(ctx context.Context, name string) (events.VM, error) {
	cur, err := v.cache.load(ctx, events.VMAgg(name))
	if err != nil {
		return events.VM{}, err
	}
	vm := cur.View.VM
	return vm, mustExist(&vm, name)
}

// askAgent sends the request to the source agent and waits for the
// comparison (up to the agent's wait plus a margin).
func (v *VerifyHandlers) askAgent(ctx context.Context, vm events.VM, waitMS int64) (agentproto.VerifyReply, error) {
	ctx, cancel := context.WithTimeout(ctx, agentproto.VerifyWait(vm.Settings, waitMS)+30*time.Second)
	defer cancel()
	out, err := v.agents.Verify(ctx, vm.SourceHost, vm.Name, agentproto.VerifyRequest{WaitMS: waitMS})
	if err != nil {
		return agentproto.VerifyReply{}, err
	}
	if out.Error != nil {
		return agentproto.VerifyReply{}, fmt.Errorf("source agent %s: %s: %s: %w", vm.SourceHost, out.Error.Code, out.Error.Message, ErrUnavailable)
	}
	if out.Differing == nil {
		out.Differing = []events.DiskRange{}
	}
	return out, nil
}

// record appends the outcome, deciding again after a conflict.
func (v *VerifyHandlers) record(ctx context.Context, meta events.Meta, name string, out agentproto.VerifyReply) (uint64, error) {
	agg := events.VMAgg(name)
	for range maxConflictRetries {
		cur, err := v.cache.load(ctx, agg)
		if err != nil {
			return 0, err
		}
		if res, ok, err := handledBefore(cur.Marks, meta.CommandID); ok || err != nil {
			return lastOf(res.seqs), err // a retried command appends nothing
		}
		vm := cur.View.VM
		evs := DecideVerification(vm, out.Point, out.Epoch, out.Cycle, out.Differing)
		meta.At = time.Now().UTC()
		res, err := v.log.Append(ctx, agg, vm.Version, meta, evs...)
		if errors.Is(err, events.ErrConflict) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("append to %s: %w", agg, err)
		}
		return lastOf(res.Seqs), nil
	}
	return 0, fmt.Errorf("append to %s: %w", agg, events.ErrConflict)
}

func lastOf(seqs []uint64) uint64 {
	if len(seqs) == 0 {
		return 0
	}
	return seqs[len(seqs)-1]
}
