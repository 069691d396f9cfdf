package hostsync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/agentproto"
	"github.com/siterecovery/siterecovery/hostsync/cycle"
	"github.com/siterecovery/siterecovery/hostsync/disk"
	"github.com/siterecovery/siterecovery/hostsync/hashtree"
)

// Initial replication. When protection is enabled (or at the policy's start
// time) the source resets every disk's change log so that tracked cycles
// start at k+1, reads the disks once in k chunks and ships chunk j as
// Initial cycle j (zero ranges as zero extents, no data). Writes made while
// it reads are tracked; the first tracked cycle closes after the last read,
// so applying the k chunks and then cycle k+1 gives the disks exactly as
// they were when k+1 closed: the first recovery point. ir.json records the
// plan and how far reading got (every chunk before Next was acknowledged by
// JetStream), so a restart goes on where it stopped.
//
// Limit: an Initial cycle is kept by JetStream, not by the source, once
// published; a chunk lost after that (the stream purged) needs a resync.

// irState is ir.json, the durable state of a VM's initial replication.
type irState struct {
	// EnableSeq is the log sequence of the protection_enable_started this
	// replication serves; another enable starts another replication.
	EnableSeq uint64 `json:"enable_seq"`
	Epoch     uint64 `json:"epoch"`
	Chunk     int64  `json:"chunk"`
	Chunks    uint64 `json:"chunks"`
	Total     int64  `json:"total"`
	// Next is the next chunk to read and publish.
	Next     uint64 `json:"next"`
	ReadDone bool   `json:"read_done"`
	// Sent is the data bytes (zero ranges skipped) of the chunks before
	// Next: what the initial replication shipped.
	Sent int64 `json:"sent"`
}

type irChunk struct {
	disk     string
	off, len int64
}

// irFlushEvery is how many chunks are published before waiting for their
// acknowledgements and recording progress (the publisher's byte window
// bounds what is in flight meanwhile).
const irFlushEvery = 16

// zeroBlock is the granularity at which initial replication skips zeros.
const zeroBlock = 64 << 10

var zeroes = make([]byte, zeroBlock)

func irPlan(disks []events.DiskSpec, chunk int64) []irChunk {
	var plan []irChunk
	for _, d := range disks {
		for off := int64(0); off < d.Size; off += chunk {
			plan = append(plan, irChunk{disk: d.Name, off: off, len: min(chunk, d.Size-off)})
		}
	}
	return plan
}

func (c *vmCtl) irPath() string { return filepath.Join(c.a.vmDir(c.name), "ir.json") }

// initialReplication runs or resumes the VM's initial replication; it says
// whether reading is done (tracked cycles may ship).
func (c *vmCtl) initialReplication(ctx context.Context, vm events.VM, enableSeq uint64, ack cycleAck) (bool, error) {
	s := &c.src.ship
	if !s.irLoaded {
		var st irState
		ok, err := loadJSON(c.irPath(), &st)
		if err != nil {
			return false, err
		}
		if ok {
			s.ir = &st
		}
		s.irLoaded = true
	}
	if s.ir != nil && s.ir.EnableSeq == enableSeq && s.ir.ReadDone {
		return true, nil
	}
	if s.ir == nil || s.ir.EnableSeq != enableSeq {
		if vm.State != events.EnablingProtection && vm.State != events.InitialReplication {
			c.reportError(ctx, agentproto.CodeResyncRequired, errors.New("initial replication state lost"))
			return false, nil
		}
		if time.Now().Before(vm.Settings.StartAt) {
			return false, nil
		}
		if err := c.startIR(vm, enableSeq); err != nil {
			c.reportError(ctx, agentproto.CodeDiskFailed, err)
			return false, err
		}
	}
	if err := c.readIR(ctx, vm); err != nil {
		c.reportError(ctx, agentproto.CodeShipFailed, err)
		return false, err
	}
	return true, nil
}

// startIR resets the change logs (tracked cycles start after the chunks)
// and then records the plan: a crash in between starts over.
func (c *vmCtl) startIR(vm events.VM, enableSeq uint64) error {
	plan := irPlan(vm.Disks, c.a.cfg.IRChunk)
	st := &irState{EnableSeq: enableSeq, Epoch: vm.Epoch, Chunk: c.a.cfg.IRChunk, Chunks: uint64(len(plan)), Next: 1}
	for _, ch := range plan {
		st.Total += ch.len
	}
	trees := map[string]*irTree{}
	for _, d := range c.src.disks {
		if err := d.ResetAfterResync(st.Chunks + 1); err != nil {
			return fmt.Errorf("initial replication: %w", err)
		}
		m, err := d.Mark()
		if err != nil {
			return fmt.Errorf("initial replication: %w", err)
		}
		n := hashtree.LeafCount(d.Size())
		trees[d.Name()] = &irTree{size: d.Size(), mark: m, leaves: make([]hashtree.Hash, n), set: make([]bool, n)}
	}
	if err := saveJSON(c.irPath(), st); err != nil {
		return fmt.Errorf("initial replication state: %w", err)
	}
	s := &c.src.ship
	s.ir, s.ackedTo, s.lastClose = st, 0, time.Time{}
	s.irSent = map[uint64]int64{}
	if st.Chunk%hashtree.LeafSize == 0 {
		s.irTrees = trees // irtree.go: the kept trees, from the chunks read
	}
	clear(s.sentAt)
	c.logger.Info().Uint64("chunks", st.Chunks).Int64("bytes", st.Total).Msg("initial replication started")
	return nil
}

// readIR reads and publishes the chunks from Next on, recording progress
// after each group of irFlushEvery chunks once JetStream acknowledged them;
// the next group is read and published meanwhile, so the stream is never
// left idle while the acknowledgements come back.
func (c *vmCtl) readIR(ctx context.Context, vm events.VM) error {
	st := c.src.ship.ir
	plan := irPlan(vm.Disks, st.Chunk)
	if uint64(len(plan)) != st.Chunks {
		return fmt.Errorf("initial replication: the disks changed: %d chunks planned, %d now", st.Chunks, len(plan))
	}
	buf := make([]byte, st.Chunk)
	pub := c.src.ship.pub
	var group int // publishes of the group under way
	for j := st.Next; j <= st.Chunks; j++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		before := pub.inFlight()
		if err := c.shipChunk(ctx, vm, st, j, plan[j-1], buf); err != nil {
			return err
		}
		group += pub.inFlight() - before
		if j%irFlushEvery != 0 && j != st.Chunks {
			continue
		}
		// Everything but this group is acknowledged: the groups before
		// are done.
		if err := pub.flushTo(ctx, group); err != nil {
			return err
		}
		if err := c.irProgress(ctx, vm, j+1-uint64(min(j, irFlushEvery))); err != nil {
			return err
		}
		group = 0
		if j == st.Chunks {
			if err := pub.flush(ctx); err != nil {
				return err
			}
			if err := c.irProgress(ctx, vm, j+1); err != nil {
				return err
			}
		}
	}
	c.logger.Info().Uint64("chunks", st.Chunks).Msg("initial replication read and shipped")
	c.keepIRTrees()
	if !st.ReadDone {
		st.ReadDone = true
		return saveJSON(c.irPath(), st)
	}
	return nil
}

// irProgress records that every chunk before next is acknowledged by
// JetStream.
func (c *vmCtl) irProgress(ctx context.Context, vm events.VM, next uint64) error {
	st := c.src.ship.ir
	if next <= st.Next {
		return nil
	}
	for j := st.Next; j < next; j++ {
		st.Sent += c.src.ship.irSent[j]
		delete(c.src.ship.irSent, j)
	}
	st.Next = next
	st.ReadDone = next > st.Chunks
	if err := saveJSON(c.irPath(), st); err != nil {
		return err
	}
	_, _, ack := c.snapshot()
	c.takeAcks(ctx, vm, ack)
	return nil
}

func (c *vmCtl) shipChunk(ctx context.Context, vm events.VM, st *irState, seq uint64, ch irChunk, buf []byte) error {
	var src *disk.Tracked
	for _, d := range c.src.disks {
		if d.Name() == ch.disk {
			src = d
		}
	}
	if src == nil {
		return fmt.Errorf("initial replication: no disk %s", ch.disk)
	}
	p := buf[:ch.len]
	if _, err := src.ReadAt(p, ch.off); err != nil {
		return fmt.Errorf("initial replication: read %s at %d: %w", ch.disk, ch.off, err)
	}
	cyc := cycle.Cycle{VM: vm.Name, Epoch: st.Epoch, Seq: seq, ClosedAt: time.Now().UTC(), Initial: true, Extents: chunkExtents(ch.disk, ch.off, p)}
	// The chunk is hashed while it is published; buf is read again only
	// after both.
	hashed := make(chan struct{})
	go func() {
		defer close(hashed)
		c.src.ship.irTrees.add(ch.disk, cyc.Extents)
	}()
	err := c.publishCycle(ctx, vm, cyc)
	<-hashed
	if err != nil {
		return err
	}
	c.src.ship.irSent[seq] = cycleBytes(cyc)
	return nil
}

// chunkExtents cuts a chunk read at off into data extents and zero
// extents (runs of all-zero blocks).
func chunkExtents(disk string, off int64, p []byte) []cycle.Extent {
	var out []cycle.Extent
	for i := 0; i < len(p); {
		n := min(zeroBlock, len(p)-i)
		zero := bytes.Equal(p[i:i+n], zeroes[:n])
		last := len(out) - 1
		if last >= 0 && out[last].Zero == zero {
			out[last].Length += int64(n)
			if !zero {
				out[last].Data = p[int(out[last].Offset-off) : i+n]
			}
		} else {
			e := cycle.Extent{Disk: disk, Offset: off + int64(i), Length: int64(n), Zero: zero}
			if !zero {
				e.Data = p[i : i+n]
			}
			out = append(out, e)
		}
		i += n
	}
	return out
}

// reportIR reports the initial replication's progress (bytes of the
// chunks applied) and its completion: the first tracked cycle applied,
// when the replica holds a consistent copy.
func (c *vmCtl) reportIR(ctx context.Context, vm events.VM, acked uint64) {
	st := c.src.ship.ir
	if st == nil || (vm.State != events.EnablingProtection && vm.State != events.InitialReplication) {
		return
	}
	if acked > st.Chunks && st.ReadDone {
		c.reportOnce(ctx, "ir-completed", agentproto.VerbIRCompleted, agentproto.IRCompletedReport{VM: c.name, SentBytes: st.Sent})
		return
	}
	done := int64(min(acked, st.Chunks)) * st.Chunk
	if done > st.Total {
		done = st.Total
	}
	if !c.due("ir-progress", time.Second) {
		return
	}
	c.reportOnce(ctx, fmt.Sprintf("ir-progress:%d", done), agentproto.VerbIRProgress, agentproto.IRProgressReport{VM: c.name, DoneBytes: done, TotalBytes: st.Total})
}
