package hostsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/siterecovery/siterecovery/events"
)

// Verify: the source agent answers sr.agent.<source>.verify.<vm> by
// comparing its kept trees at its latest closed cycle with the replica's
// images re-hashed at that same cycle (leaves requests with Rehash to the
// recovery host), and replies with the differing ranges. The control plane
// (`vm verify`) asks it and records the outcome.

// VerifySubject is the subject a VM's source agent answers verify
// requests on.
func VerifySubject(host, vm string) string { return "sr.agent." + host + ".verify." + vm }

// VerifyRequest asks a source agent to compare both sides now.
type VerifyRequest struct {
	// WaitMS bounds how long the agent waits for the replica to reach
	// the source's latest closed cycle; default two copy intervals plus
	// 10 s, at most verifyMaxWait.
	WaitMS int64 `json:"wait_ms,omitempty"`
}

// VerifyRange is a run of bytes of a disk that differs.
type VerifyRange struct {
	Disk   string `json:"disk"`
	Offset int64  `json:"offset"`
	Length int64  `json:"length"`
}

// VerifyReply is the outcome: the point compared, whether the replica
// equals the source there, and the differing ranges; or an error with a
// code (unavailable: try again later; internal).
type VerifyReply struct {
	VM        string        `json:"vm"`
	Epoch     uint64        `json:"epoch,omitempty"`
	Cycle     uint64        `json:"cycle,omitempty"`
	Point     string        `json:"point,omitempty"`
	Equal     bool          `json:"equal"`
	Differing []VerifyRange `json:"differing"`
	Error     *VerifyError  `json:"error,omitempty"`
}

// VerifyError is a verify that could not compare.
type VerifyError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

const (
	verifyMaxWait = 5 * time.Minute
	verifyPoll    = 200 * time.Millisecond
	verifyAsk     = 10 * time.Second
)

// serveVerify subscribes the VM's verify subject once per source side.
func (c *vmCtl) serveVerify() {
	in := c.src.integrity()
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.verify != nil {
		return
	}
	sub, err := c.a.tr.Peers.Serve(VerifySubject(c.a.cfg.Host, c.name), func(data []byte, respond func([]byte) error) {
		c.answerVerify(in, data, respond)
	})
	if err != nil {
		c.warnOnce("verify", err)
		return
	}
	in.verify = sub
}

// closeIntegrity stops answering verify requests.
func (s *sourceSide) closeIntegrity() error {
	if s.integ == nil {
		return nil
	}
	s.integ.mu.Lock()
	defer s.integ.mu.Unlock()
	if s.integ.verify == nil {
		return nil
	}
	err := s.integ.verify.Unsubscribe()
	s.integ.verify = nil
	if errors.Is(err, ErrSubscriptionClosed) {
		return nil
	}
	return err
}

func (c *vmCtl) answerVerify(in *sourceIntegrity, data []byte, respond func([]byte) error) {
	var req VerifyRequest
	out := VerifyReply{VM: c.name, Differing: []VerifyRange{}}
	var err error
	if len(data) > 0 {
		err = json.Unmarshal(data, &req)
	}
	if err == nil {
		vm, _, _ := c.snapshot()
		ctx, cancel := context.WithTimeout(context.Background(), verifyWait(vm, req))
		out, err = c.verify(ctx, in, vm)
		cancel()
	}
	if err != nil {
		code := "internal"
		if errors.Is(err, ErrNotVerifiable) {
			code = "unavailable"
		}
		out = VerifyReply{VM: c.name, Differing: []VerifyRange{}, Error: &VerifyError{Code: code, Message: err.Error()}}
	}
	c.logger.Info().Bool("equal", out.Equal).Str("point", out.Point).Int("differing", len(out.Differing)).Err(err).Msg("verify")
	reply, _ := json.Marshal(out)
	if rerr := respond(reply); rerr != nil {
		c.logger.Debug().Err(rerr).Msg("verify reply")
	}
}

func verifyWait(vm events.VM, req VerifyRequest) time.Duration {
	if req.WaitMS > 0 {
		return min(time.Duration(req.WaitMS)*time.Millisecond, verifyMaxWait)
	}
	return min(2*copyFrequency(vm)+10*time.Second, verifyMaxWait)
}

// verify compares until it could at one cycle, or ctx ends.
func (c *vmCtl) verify(ctx context.Context, in *sourceIntegrity, vm events.VM) (VerifyReply, error) {
	last := fmt.Errorf("%w: nothing compared yet", ErrNotVerifiable)
	for {
		if vm.SourceHost != c.a.cfg.Host || vm.RecoveryHost == "" {
			return VerifyReply{}, fmt.Errorf("%w: host %s is not the replicating source of %s", ErrNotVerifiable, c.a.cfg.Host, c.name)
		}
		out, done, err := c.compareAt(ctx, in, vm)
		if done || (err != nil && !errors.Is(err, ErrNotVerifiable)) {
			return out, err
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			return VerifyReply{}, fmt.Errorf("%w: %v", ErrNotVerifiable, last)
		case <-time.After(verifyPoll):
		}
		vm, _, _ = c.snapshot()
	}
}

// compareAt compares the replica re-hashed at its last applied cycle with
// the source's kept trees rolled back to that cycle. done is false (with an
// error wrapping ErrNotVerifiable) when the source cannot rebuild its trees
// at the replica's cycle or the replica moved meanwhile.
func (c *vmCtl) compareAt(ctx context.Context, in *sourceIntegrity, vm events.VM) (VerifyReply, bool, error) {
	out := VerifyReply{VM: c.name, Differing: []VerifyRange{}}
	if len(vm.Disks) == 0 {
		return out, false, fmt.Errorf("%w: vm has no disks", ErrNotVerifiable)
	}
	pos, err := c.askRehash(ctx, vm.RecoveryHost, leavesRequest{Disk: vm.Disks[0].Name}) // position only: cheap
	if err != nil {
		return out, false, err
	}
	if pos.Epoch != vm.Epoch {
		return out, false, fmt.Errorf("%w: replica at epoch %d, vm at %d", ErrNotVerifiable, pos.Epoch, vm.Epoch)
	}
	snap, err := in.snapshotAt(pos.Seq)
	if err != nil {
		return out, false, err
	}
	out.Epoch, out.Cycle, out.Point = vm.Epoch, snap.seq, PointID(vm.Epoch, snap.seq)
	for _, d := range vm.Disks {
		src, ok := snap.trees[d.Name]
		if !ok {
			return out, false, fmt.Errorf("%w: no source tree of disk %s", ErrNotVerifiable, d.Name)
		}
		rep, err := c.rehashedTree(ctx, vm, d.Name, snap.seq)
		if err != nil {
			return out, false, err
		}
		diff, err := src.Diff(rep)
		if err != nil {
			return out, true, err
		}
		for _, r := range diff {
			out.Differing = append(out.Differing, VerifyRange{Disk: d.Name, Offset: r.Offset, Length: r.Length})
		}
	}
	out.Equal = len(out.Differing) == 0
	return out, true, nil
}

// rehashedTree fetches the replica's re-hashed leaves of a disk page by
// page; every page must describe (vm.Epoch, seq).
func (c *vmCtl) rehashedTree(ctx context.Context, vm events.VM, disk string, seq uint64) (*HashTree, error) {
	var leaves []byte
	var size int64
	for first := 0; ; first += leafPage {
		rep, err := c.askRehash(ctx, vm.RecoveryHost, leavesRequest{Disk: disk, First: first, N: leafPage, Rehash: true})
		if err != nil {
			return nil, err
		}
		if rep.Epoch != vm.Epoch || rep.Seq != seq {
			return nil, fmt.Errorf("%w: replica at %s, source at %s", ErrNotVerifiable, PointID(rep.Epoch, rep.Seq), PointID(vm.Epoch, seq))
		}
		leaves, size = append(leaves, rep.Leaves...), rep.Size
		if len(rep.Leaves) < leafPage*len(hashNode{}) {
			break
		}
	}
	return HashTreeFromLeaves(size, leaves)
}

func (c *vmCtl) askRehash(ctx context.Context, host string, req leavesRequest) (leavesReply, error) {
	data, err := json.Marshal(req)
	if err != nil {
		return leavesReply{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, verifyAsk)
	defer cancel()
	reply, err := c.a.tr.Peers.Request(ctx, leavesSubject(host, c.name), data)
	if err != nil {
		return leavesReply{}, fmt.Errorf("%w: recovery host %s: %v", ErrNotVerifiable, host, err)
	}
	var rep leavesReply
	if err := json.Unmarshal(reply, &rep); err != nil {
		return leavesReply{}, fmt.Errorf("leaves reply of %s: %w", host, err)
	}
	if rep.Error != "" {
		return leavesReply{}, fmt.Errorf("%w: recovery host %s: %s", ErrNotVerifiable, host, rep.Error)
	}
	return rep, nil
}
