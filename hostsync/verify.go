package hostsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/agentproto"
	"github.com/siterecovery/siterecovery/hostsync/hashtree"
	"github.com/siterecovery/siterecovery/hostsync/replica"
)

// Verify: the source agent answers agentproto.VerifySubject by comparing
// its kept trees at its latest closed cycle with the replica's images
// re-hashed at that same cycle (leaves requests with Rehash to the recovery
// host), and replies with the differing ranges (agentproto.VerifyReply).
// The control plane (`vm verify`) asks it and records the outcome.

const (
	verifyPoll = 200 * time.Millisecond
	verifyAsk  = 10 * time.Second
)

// serveVerify subscribes the VM's verify subject once per source side.
func (c *vmCtl) serveVerify() {
	in := c.src.integrity()
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.verify != nil {
		return
	}
	sub, err := c.a.tr.Peers.Serve(agentproto.VerifySubject(c.a.cfg.Host, c.name), func(data []byte, respond func([]byte) error) {
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
	var req agentproto.VerifyRequest
	out := agentproto.VerifyReply{VM: c.name, Differing: []events.DiskRange{}}
	var err error
	if len(data) > 0 {
		err = json.Unmarshal(data, &req)
	}
	if err == nil {
		vm, _, _ := c.snapshot()
		ctx, cancel := context.WithTimeout(context.Background(), agentproto.VerifyWait(vm.Settings, req.WaitMS))
		out, err = c.verify(ctx, in, vm)
		cancel()
	}
	if err != nil {
		code := "internal"
		if errors.Is(err, ErrNotVerifiable) {
			code = "unavailable"
		}
		out = agentproto.VerifyReply{VM: c.name, Differing: []events.DiskRange{}, Error: &agentproto.Error{Code: code, Message: err.Error()}}
	}
	c.logger.Info().Bool("equal", out.Equal).Str("point", out.Point).Int("differing", len(out.Differing)).Err(err).Msg("verify")
	reply, _ := json.Marshal(out)
	if rerr := respond(reply); rerr != nil {
		c.logger.Debug().Err(rerr).Msg("verify reply")
	}
}

// verify compares until it could at one cycle, or ctx ends.
func (c *vmCtl) verify(ctx context.Context, in *sourceIntegrity, vm events.VM) (agentproto.VerifyReply, error) {
	last := fmt.Errorf("%w: nothing compared yet", ErrNotVerifiable)
	for {
		if vm.SourceHost != c.a.cfg.Host || vm.RecoveryHost == "" {
			return agentproto.VerifyReply{}, fmt.Errorf("%w: host %s is not the replicating source of %s", ErrNotVerifiable, c.a.cfg.Host, c.name)
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
			return agentproto.VerifyReply{}, fmt.Errorf("%w: %v", ErrNotVerifiable, last)
		case <-time.After(verifyPoll):
		}
		vm, _, _ = c.snapshot()
	}
}

// compareAt compares the replica re-hashed at its last applied cycle with
// the source's kept trees rolled back to that cycle. done is false (with an
// error wrapping ErrNotVerifiable) when the source cannot rebuild its trees
// at the replica's cycle or the replica moved meanwhile.
func (c *vmCtl) compareAt(ctx context.Context, in *sourceIntegrity, vm events.VM) (agentproto.VerifyReply, bool, error) {
	out := agentproto.VerifyReply{VM: c.name, Differing: []events.DiskRange{}}
	if len(vm.Disks) == 0 {
		return out, false, fmt.Errorf("%w: vm has no disks", ErrNotVerifiable)
	}
	pos, err := c.askRehash(ctx, vm.RecoveryHost, newLeavesRequest(vm.Disks[0].Name, 0, 0, false)) // position only: cheap
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
	out.Epoch, out.Cycle, out.Point = vm.Epoch, snap.seq, replica.PointID(vm.Epoch, snap.seq)
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
			out.Differing = append(out.Differing, events.DiskRange{Disk: d.Name, Offset: r.Offset, Length: r.Length})
		}
	}
	out.Equal = len(out.Differing) == 0
	return out, true, nil
}

// rehashedTree fetches the replica's re-hashed leaves of a disk page by
// page; every page must describe (vm.Epoch, seq).
func (c *vmCtl) rehashedTree(ctx context.Context, vm events.VM, disk string, seq uint64) (*hashtree.Tree, error) {
	var leaves []byte
	var size int64
	for first := 0; ; first += leafPage {
		rep, err := c.askRehash(ctx, vm.RecoveryHost, newLeavesRequest(disk, first, leafPage, true))
		if err != nil {
			return nil, err
		}
		if rep.Epoch != vm.Epoch || rep.Seq != seq {
			return nil, fmt.Errorf("%w: replica at %s, source at %s", ErrNotVerifiable, replica.PointID(rep.Epoch, rep.Seq), replica.PointID(vm.Epoch, seq))
		}
		leaves, size = append(leaves, rep.Leaves...), rep.Size
		if len(rep.Leaves) < leafPage*len(hashtree.Hash{}) {
			break
		}
	}
	return hashtree.FromLeaves(size, leaves)
}

func (c *vmCtl) askRehash(ctx context.Context, host string, req leavesRequest) (leavesReply, error) {
	data, err := json.Marshal(req)
	if err != nil {
		return leavesReply{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, verifyAsk)
	defer cancel()
	reply, err := c.a.tr.Peers.Request(ctx, agentproto.LeavesSubject(host, c.name), data)
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
	if err := checkLeavesHash(req, rep, ErrNotVerifiable); err != nil {
		return leavesReply{}, err
	}
	return rep, nil
}
