package hostsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/agentproto"
	"github.com/siterecovery/siterecovery/hostsync/batch"
	"github.com/siterecovery/siterecovery/hostsync/cycle"
	"github.com/siterecovery/siterecovery/hostsync/disk"
	"github.com/siterecovery/siterecovery/hostsync/hashtree"
	"github.com/siterecovery/siterecovery/hostsync/replica"
	"github.com/siterecovery/siterecovery/hostsync/sparse"
)

// Resync: the source compares its disks' hash trees with the recovery
// host's (whose agent answers sr.agent.<host>.leaves.<vm> with its
// replica's leaf hashes) and ships only the differing blocks, as Initial
// cycles base..base+count-1 through the normal delta path; the change log is
// reset first so the writes made meanwhile follow as cycles base+count on.
// Used by resync_started, by reverse replication after an unplanned
// failover, and by a source that goes on at a new epoch after a cancelled
// failover (a rebase: its cycles are numbered from 1 again).
//
// Resumable: the plan (base, count, the differing ranges) and how many
// chunks were published are recorded in the failover state after each
// chunk; a restart publishes the rest. A chunk is encoded without
// compression and with fixed message ids, so a chunk published again after
// a crash splits into the same batches and JetStream drops the duplicates.

// leafPage is how many leaf hashes one leaves reply carries (256 KiB).
const leafPage = 8192

// resyncState is a resync run, in failoverState.
type resyncState struct {
	Key     string                   `json:"key,omitempty"`
	Base    uint64                   `json:"base,omitempty"`
	Count   uint64                   `json:"count,omitempty"`
	Next    uint64                   `json:"next,omitempty"`
	Ranges  map[string][]cycle.Range `json:"ranges,omitempty"`
	Planned bool                     `json:"planned,omitempty"`
	Done    bool                     `json:"done,omitempty"`
	Total   int64                    `json:"total,omitempty"`
	Sent    int64                    `json:"sent,omitempty"`
}

// leavesRequest asks for leaves [First, First+N) of a disk, or with Sub
// for the sub-block hashes of those leaves.
type leavesRequest struct {
	Disk  string `json:"disk"`
	First int    `json:"first"`
	N     int    `json:"n"`
	Sub   []int  `json:"sub,omitempty"`
	// Rehash asks for leaves re-read from the image, not the kept tree
	// (verify.go: a scrub).
	Rehash bool `json:"rehash,omitempty"`
	// Hash names the hash the leaves are asked in (hashtree.HashName);
	// empty from a build before it, which asks for SHA-256. A host
	// answers leaves only in its own hash and refuses the others with an
	// error naming both. Sub-block hashes (Sub) are SHA-256 in every build.
	Hash string `json:"hash,omitempty"`
}

// leavesReply is the replica's position and the leaves asked for.
type leavesReply struct {
	Epoch  uint64 `json:"epoch"`
	Seq    uint64 `json:"seq"`
	Size   int64  `json:"size"`
	Leaves []byte `json:"leaves"`
	Error  string `json:"error,omitempty"`
	// Hash names the hash of Leaves (hashtree.HashName) when they are
	// tree leaves; empty from a build before it (SHA-256), whose leaves
	// the asker refuses (checkLeavesHash) rather than compare.
	Hash string `json:"hash,omitempty"`
}

// newLeavesRequest asks for tree leaves in this build's hash.
func newLeavesRequest(disk string, first, n int, rehash bool) leavesRequest {
	return leavesRequest{Disk: disk, First: first, N: n, Rehash: rehash, Hash: hashtree.HashName}
}

// checkLeavesHash refuses tree leaves (not sub-block hashes) of another
// hash than this build's, with an error wrapping ErrOtherHash and kind:
// they would differ everywhere and are no sign of corruption.
func checkLeavesHash(req leavesRequest, rep leavesReply, kind error) error {
	if len(req.Sub) > 0 || hashtree.SameHash(rep.Hash) {
		return nil
	}
	return fmt.Errorf("%w: %w: the peer's leaves are %s, this host's trees %s", kind, ErrOtherHash, hashOrSHA256(rep.Hash), hashtree.HashName)
}

// serveLeaves answers leaves requests while this host holds the VM's
// replica and serves no promoted copy of it: a source going on after a
// cancelled failover waits for the answer before it serves the VM again.
func (c *vmCtl) serveLeaves(vm events.VM) {
	var rep *replica.Replica
	if vm.RecoveryHost == c.a.cfg.Host && c.rcv != nil && c.fo.st.Promoted == 0 {
		rep = c.rcv.replica
	}
	if rep == c.fo.leafRep {
		return
	}
	c.dropLeaves()
	if rep == nil {
		return
	}
	sub, err := c.a.tr.Peers.Serve(agentproto.LeavesSubject(c.a.cfg.Host, c.name), func(data []byte, respond func([]byte) error) {
		answerLeaves(rep, data, respond)
	})
	if err != nil {
		c.warnOnce("leaves", err)
		return
	}
	c.fo.leaves, c.fo.leafRep = sub, rep
}

func (c *vmCtl) dropLeaves() {
	if c.fo.leaves != nil {
		if err := c.fo.leaves.Unsubscribe(); err != nil {
			c.logger.Debug().Err(err).Msg("unsubscribe leaves")
		}
	}
	c.fo.leaves, c.fo.leafRep = nil, nil
}

func answerLeaves(rep *replica.Replica, data []byte, respond func([]byte) error) {
	var req leavesRequest
	var out leavesReply
	err := json.Unmarshal(data, &req)
	out.Epoch, out.Seq = rep.LastApplied()
	var t *hashtree.Tree
	switch {
	case err != nil:
	case len(req.Sub) > subPage:
		err = fmt.Errorf("%w: %d leaves asked at once", hashtree.ErrInvalid, len(req.Sub))
	case len(req.Sub) > 0:
		out.Leaves, err = rep.SubHashes(req.Disk, req.Sub)
	case !hashtree.SameHash(req.Hash):
		err = fmt.Errorf("%w: leaves asked in %s, this host's trees are %s", ErrOtherHash, hashOrSHA256(req.Hash), hashtree.HashName)
	case req.Rehash: // a scrub: hostsync/replica, rehash.go
		out.Epoch, out.Seq, out.Size, out.Leaves, err = rep.RehashLeaves(req.Disk, req.First, min(req.N, leafPage))
	default:
		if t, err = rep.HashTree(req.Disk); err == nil {
			out.Size, out.Leaves = t.Size(), t.LeafHashesRange(req.First, min(req.N, leafPage))
		}
	}
	if err != nil {
		out.Error = err.Error()
	} else if len(req.Sub) == 0 {
		out.Hash = hashtree.HashName
	}
	reply, _ := json.Marshal(out)
	_ = respond(reply)
}

// resyncKey names the resync the VM needs from this source now ("": none).
func (c *vmCtl) resyncKey(vm events.VM) string {
	switch {
	case vm.State == events.Resynchronizing:
		return fmt.Sprintf("resync-%d", c.fo.info.resyncSeq)
	case vm.State == events.ReverseReplicationState && vm.FailoverMode != events.FailoverPlanned:
		return fmt.Sprintf("reverse-%d", c.fo.info.reverseSeq)
	case vm.State != events.ReverseReplicationState && c.fo.st.SrcEpoch != 0 && c.fo.st.SrcEpoch < vm.Epoch:
		return fmt.Sprintf("rebase-%d", vm.Epoch)
	}
	return ""
}

// resyncSource runs the source's side of a resync, then ships as usual.
func (c *vmCtl) resyncSource(ctx context.Context, vm events.VM, enableSeq uint64, ack cycleAck) (bool, error) {
	key := c.resyncKey(vm)
	if key == "" {
		c.updateTrees(vm)
		return false, nil
	}
	if c.src == nil {
		if err := c.openDisks(vm); err != nil {
			return true, err
		}
	}
	r := &c.fo.st.Resync
	if r.Key != key {
		*r = resyncState{Key: key}
		if err := c.saveFailover(); err != nil {
			return true, err
		}
	}
	rebase := key == fmt.Sprintf("rebase-%d", vm.Epoch)
	if rebase && !r.Planned {
		// The peer answers only once it stopped serving its promoted
		// copy: then this host may serve the VM again.
		if err := c.planResync(ctx, vm); err != nil {
			return true, err
		}
	}
	if vm.ActiveHost == c.a.cfg.Host {
		if err := c.startServing(ctx, vm); err != nil {
			return true, err
		}
	}
	if !r.Done {
		if err := c.runResync(ctx, vm); err != nil {
			return true, err
		}
	}
	if rebase {
		c.fo.st.SrcEpoch = vm.Epoch
		return true, c.saveFailover()
	}
	c.updateTrees(vm)
	if err := c.ship(ctx, vm, enableSeq, ack); err != nil {
		return true, err
	}
	if ack.Enable == enableSeq && ack.Epoch == vm.Epoch && ack.Seq >= r.Base+r.Count-1 {
		c.reportNow(ctx, "resync-completed:"+key, agentproto.VerbResyncCompleted, agentproto.ResyncCompletedReport{
			ReportHead: agentproto.ReportHead{CommandID: "resync-completed-" + c.name + "-" + key, VM: c.name, Epoch: vm.Epoch},
			SentBytes:  r.Sent,
		})
	}
	return true, nil
}

// runResync plans the resync (once) and publishes the chunks not published
// yet.
func (c *vmCtl) runResync(ctx context.Context, vm events.VM) error {
	r := &c.fo.st.Resync
	if !r.Planned {
		if err := c.planResync(ctx, vm); err != nil {
			return err
		}
	}
	if err := c.ensureStream(ctx, vm.TargetSite); err != nil {
		return err
	}
	chunks := packChunks(vm.Disks, r.Ranges, c.a.cfg.IRChunk, int(r.Count))
	for r.Next < r.Count {
		j := r.Next
		n, err := c.publishChunk(ctx, vm, r, chunks[j])
		if err != nil {
			return err
		}
		r.Next, r.Sent = j+1, r.Sent+n
		if err := c.saveFailover(); err != nil {
			return err
		}
		c.reportResyncProgress(ctx, vm, r)
	}
	r.Done = true
	c.logger.Info().Int64("sent", r.Sent).Int64("differing", r.Total).Msg("resync chunks published")
	return c.saveFailover()
}

// planResync asks the peer where its replica is, resets the change log
// after the resync's cycle numbers, and diffs the trees.
func (c *vmCtl) planResync(ctx context.Context, vm events.VM) error {
	r := &c.fo.st.Resync
	if vm.State == events.Resynchronizing {
		if err := c.purgeDeltas(ctx, vm); err != nil {
			return err
		}
	}
	remote := map[string]*hashtree.Tree{}
	var epoch, seq uint64
	for _, d := range vm.Disks {
		t, e, s, err := c.peerTree(ctx, vm, d)
		if err != nil {
			return err
		}
		remote[d.Name], epoch, seq = t, e, s
	}
	base := uint64(1)
	if epoch == vm.Epoch {
		base = seq + 1
	}
	count := uint64(len(irPlan(vm.Disks, c.a.cfg.IRChunk)))
	for _, d := range c.src.disks {
		if err := d.ResetAfterResync(base + count); err != nil {
			return err
		}
	}
	s := &c.src.ship
	s.ackedTo, s.attempt, s.lastClose = 0, s.attempt+1, time.Now()
	clear(s.sentAt)
	c.dropTrees()
	ranges := map[string][]cycle.Range{}
	var total int64
	for _, d := range c.src.disks {
		diff, err := c.diskDiff(ctx, vm, d, remote[d.Name()], epoch, seq)
		if err != nil {
			return err
		}
		ranges[d.Name()] = diff
		for _, br := range diff {
			total += br.Length
		}
	}
	*r = resyncState{Key: r.Key, Base: base, Count: count, Ranges: ranges, Planned: true, Total: total}
	c.logger.Info().Uint64("base", base).Uint64("count", count).Int64("differing", total).Msg("resync planned")
	return c.saveFailover()
}

// diskDiff compares a disk with the peer's tree, then its differing leaves
// block by block.
func (c *vmCtl) diskDiff(ctx context.Context, vm events.VM, d *disk.Tracked, remote *hashtree.Tree, epoch, seq uint64) ([]cycle.Range, error) {
	f, err := os.Open(d.Path())
	if err != nil {
		return nil, err
	}
	defer f.Close()
	local, err := hashtree.Build(f, d.Size())
	if err != nil {
		return nil, err
	}
	diff, err := local.Diff(remote)
	if err != nil {
		return nil, err
	}
	return refineRanges(f, d.Size(), diff, func(leaves []int) ([]byte, error) {
		rep, err := c.askLeaves(ctx, vm, leavesRequest{Disk: d.Name(), Sub: leaves})
		if err == nil && (rep.Epoch != epoch || rep.Seq != seq) {
			err = fmt.Errorf("%w: the replica moved while it was compared", ErrPeerUnavailable)
		}
		return rep.Leaves, err
	})
}

// peerTree fetches the recovery host's tree of one disk, page by page.
func (c *vmCtl) peerTree(ctx context.Context, vm events.VM, d events.DiskSpec) (*hashtree.Tree, uint64, uint64, error) {
	var leaves []byte
	var epoch, seq uint64
	for first := 0; first == 0 || first < hashtree.LeafCount(d.Size); first += leafPage {
		// Rehash: the replica's images are read again, so a block damaged
		// behind the agent's back (which its kept tree cannot know) is
		// found and repaired (Replica.RehashLeaves, hostsync/replica).
		rep, err := c.askLeaves(ctx, vm, newLeavesRequest(d.Name, first, leafPage, true))
		if err != nil {
			return nil, 0, 0, err
		}
		if first == 0 {
			epoch, seq = rep.Epoch, rep.Seq
		} else if rep.Epoch != epoch || rep.Seq != seq {
			return nil, 0, 0, fmt.Errorf("%w: the replica moved while its leaves were read", ErrPeerUnavailable)
		}
		leaves = append(leaves, rep.Leaves...)
	}
	t, err := hashtree.FromLeaves(d.Size, leaves)
	return t, epoch, seq, err
}

func (c *vmCtl) askLeaves(ctx context.Context, vm events.VM, req leavesRequest) (leavesReply, error) {
	data, err := json.Marshal(req)
	if err != nil {
		return leavesReply{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	reply, err := c.a.tr.Peers.Request(ctx, agentproto.LeavesSubject(vm.RecoveryHost, vm.Name), data)
	if err != nil {
		return leavesReply{}, fmt.Errorf("%w: leaves of %s from %s: %v", ErrPeerUnavailable, vm.Name, vm.RecoveryHost, err)
	}
	var rep leavesReply
	if err := json.Unmarshal(reply, &rep); err != nil {
		return leavesReply{}, fmt.Errorf("%w: leaves reply: %v", ErrPeerUnavailable, err)
	}
	if rep.Error != "" {
		return leavesReply{}, fmt.Errorf("%w: %s", ErrPeerUnavailable, rep.Error)
	}
	if err := checkLeavesHash(req, rep, ErrPeerUnavailable); err != nil {
		return leavesReply{}, err
	}
	return rep, nil
}

// chunkPiece is a range of one disk in a resync chunk.
type chunkPiece struct {
	disk string
	cycle.Range
}

// packChunks cuts the ranges, disk by disk, into count chunks of at most
// size bytes (the last takes any rest); deterministic for equal input.
func packChunks(disks []events.DiskSpec, ranges map[string][]cycle.Range, size int64, count int) [][]chunkPiece {
	out := make([][]chunkPiece, count)
	j, room := 0, size
	for _, d := range disks {
		for _, br := range ranges[d.Name] {
			for br.Length > 0 {
				if room == 0 && j < count-1 {
					j, room = j+1, size
				}
				n := br.Length
				if j < count-1 {
					n = min(n, room)
				}
				out[j] = append(out[j], chunkPiece{disk: d.Name, Range: cycle.Range{Offset: br.Offset, Length: n}})
				br.Offset, br.Length, room = br.Offset+n, br.Length-n, max(room-n, 0)
			}
		}
	}
	return out
}

// publishChunk reads a chunk's ranges and publishes it as an Initial cycle
// (uncompressed, fixed ids), waiting for JetStream's acknowledgements.
func (c *vmCtl) publishChunk(ctx context.Context, vm events.VM, r *resyncState, pieces []chunkPiece) (int64, error) {
	cyc := cycle.Cycle{VM: vm.Name, Epoch: vm.Epoch, Seq: r.Base + r.Next, ClosedAt: time.Now().UTC(), Initial: true}
	var n int64
	for _, p := range pieces {
		e, err := c.readExtent(p)
		if err != nil {
			return 0, err
		}
		cyc.Extents = append(cyc.Extents, e)
		if !e.Zero {
			n += e.Length
		}
	}
	batches, err := batch.EncodeCycle(cyc, batch.Options{MaxPayload: c.batchLimit(), Compression: batch.CompressionNone})
	if err != nil {
		return 0, err
	}
	subject := agentproto.DeltaSubject(vm.TargetSite, c.a.cfg.Host, vm.Name, vm.Epoch)
	for i, b := range batches {
		id := batch.MsgID(vm.Name, vm.Epoch, cyc.Seq, i) + "." + r.Key
		if err := c.src.ship.pub.publish(ctx, subject, id, b); err != nil {
			return 0, err
		}
	}
	return n, c.src.ship.pub.flush(ctx)
}

// readExtent reads one piece of a disk (a zero extent when all zero).
func (c *vmCtl) readExtent(p chunkPiece) (cycle.Extent, error) {
	for _, d := range c.src.disks {
		if d.Name() != p.disk {
			continue
		}
		buf := make([]byte, p.Length)
		if _, err := d.ReadAt(buf, p.Offset); err != nil {
			return cycle.Extent{}, fmt.Errorf("resync read %s at %d: %w", p.disk, p.Offset, err)
		}
		if sparse.IsZero(buf) {
			return cycle.Extent{Disk: p.disk, Offset: p.Offset, Length: p.Length, Zero: true}, nil
		}
		return cycle.Extent{Disk: p.disk, Offset: p.Offset, Length: p.Length, Data: buf}, nil
	}
	return cycle.Extent{}, errors.New("resync: no disk " + p.disk)
}

func (c *vmCtl) reportResyncProgress(ctx context.Context, vm events.VM, r *resyncState) {
	if vm.State != events.Resynchronizing && vm.State != events.ReverseReplicationState {
		return
	}
	if r.Next < r.Count && !c.due("resync-progress", time.Second) {
		return
	}
	var total int64
	for _, d := range vm.Disks {
		total += d.Size
	}
	done := total * int64(r.Next) / int64(max(r.Count, 1))
	c.reportNow(ctx, fmt.Sprintf("resync-progress:%d", r.Next), agentproto.VerbResyncProgress, agentproto.ResyncProgressReport{
		ReportHead: agentproto.ReportHead{CommandID: fmt.Sprintf("resync-progress-%s-%s-%d", c.name, r.Key, r.Next), VM: c.name, Epoch: vm.Epoch},
		DoneBytes:  done, TotalBytes: total, SentBytes: r.Sent,
	})
}
