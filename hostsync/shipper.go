package hostsync

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/agentproto"
	"github.com/siterecovery/siterecovery/hostsync/batch"
	"github.com/siterecovery/siterecovery/hostsync/cycle"
	"github.com/siterecovery/siterecovery/hostsync/disk"
	"github.com/siterecovery/siterecovery/hostsync/hashtree"
	"github.com/siterecovery/siterecovery/hostsync/nbd"
)

// sourceSide is the source host's part for a VM: its tracked disks, their
// NBD exports and the shipping state.
type sourceSide struct {
	disks    []*disk.Tracked // in the VM's disk order
	exported bool
	ship     shipState
	integ    *sourceIntegrity // integrity.go: kept trees, roots, verify
}

// shipState is the shipper's memory; the durable part is the change logs
// (closed, unacknowledged cycles) and ir.json.
type shipState struct {
	ir        *irState
	irLoaded  bool
	irTrees   irTrees          // nil unless this process read the IR from chunk 1
	irSent    map[uint64]int64 // chunk → data bytes, until recorded in ir.json
	pub       *publisher
	stream    string               // delta stream ensured
	sentAt    map[uint64]time.Time // cycle → when it was last sent
	attempt   int
	ackedTo   uint64
	ackedAt   time.Time // when ackedTo last moved
	lastClose time.Time
	lastApp   time.Time
	// enableSeq is the protection being shipped (the log sequence of its
	// protection_enable_started).
	enableSeq uint64
}

func (s *sourceSide) close(srv *nbd.Server) error {
	var errs []error
	for _, d := range s.disks {
		errs = append(errs, d.Close())
	}
	errs = append(errs, s.closeIntegrity())
	return errors.Join(errs...)
}

// reconcileSource opens and serves the VM's disks where it is active and
// replicates them where this host is the source.
func (c *vmCtl) reconcileSource(ctx context.Context, vm events.VM, enableSeq uint64, ack cycleAck) error {
	host := c.a.cfg.Host
	if vm.SourceHost != host && vm.ActiveHost != host {
		if c.src != nil && c.src.exported {
			return c.setExported(false)
		}
		return nil
	}
	if c.src == nil {
		if err := c.openDisks(vm); err != nil {
			c.reportError(ctx, agentproto.CodeDiskFailed, err)
			return err
		}
	}
	if err := c.setExported(vm.ActiveHost == host); err != nil {
		return err
	}
	c.reportSourceImages(ctx, vm)
	if vm.SourceHost != host || vm.RecoveryHost == "" || !slices.Contains(shipStates, vm.State) {
		return nil
	}
	return c.ship(ctx, vm, enableSeq, ack)
}

func (c *vmCtl) openDisks(vm events.VM) error {
	dir := c.a.vmDir(vm.Name)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("vm dir: %w", err)
	}
	src := &sourceSide{ship: shipState{sentAt: map[uint64]time.Time{}, irSent: map[uint64]int64{}}}
	for _, spec := range vm.Disks {
		d, err := disk.Open(filepath.Join(dir, spec.Name+".img"), spec.Size, disk.Options{
			Name: spec.Name, BootID: c.a.cfg.DiskBootID, Logger: c.logger,
		})
		if err != nil {
			return errors.Join(fmt.Errorf("disk %s: %w", spec.Name, err), src.close(nil))
		}
		src.disks = append(src.disks, d)
	}
	c.src = src
	return c.alignDisks()
}

// alignDisks closes cycles on disks that lag behind the others (a crash
// between closing one disk and the next), so that cycle n is cycle n of
// every disk.
func (c *vmCtl) alignDisks() error {
	var top uint64
	for _, d := range c.src.disks {
		if p := d.Pending(); len(p) > 0 {
			top = max(top, p[len(p)-1])
		}
	}
	for _, d := range c.src.disks {
		p := d.Pending()
		if top == 0 || (len(p) > 0 && p[len(p)-1] == top) {
			continue
		}
		for range 4 {
			seq, err := d.CloseCycle(time.Now(), false)
			if err != nil || seq >= top {
				break
			}
		}
		c.logger.Warn().Str("disk", d.Name()).Uint64("cycle", top).Msg("disk cycles realigned after a crash")
	}
	return nil
}

// A tracked disk is what the NBD server serves.
var _ nbd.ExportDisk = (*disk.Tracked)(nil)

// setExported serves the VM's disks over NBD or stops serving them (a
// fence: RemoveExport returns once no request runs).
func (c *vmCtl) setExported(on bool) error {
	if c.src == nil || c.src.exported == on {
		return nil
	}
	var errs []error
	for _, d := range c.src.disks {
		name := ExportName(c.name, d.Name())
		if on {
			errs = append(errs, c.a.nbd.AddExport(name, d))
		} else {
			errs = append(errs, c.a.nbd.RemoveExport(name))
		}
	}
	c.src.exported = on
	c.logger.Info().Bool("served", on).Msg("nbd exports")
	return errors.Join(errs...)
}

// reportSourceImages reports the disks' images the VM does not record yet.
func (c *vmCtl) reportSourceImages(ctx context.Context, vm events.VM) {
	host := c.a.cfg.Host
	for _, d := range c.src.disks {
		want := events.DiskImage{Host: host, Role: events.DiskRoleSource, Image: d.Path(), Epoch: vm.Epoch}
		if vm.ActiveHost == host {
			want.NBDURL = nbd.URL(ExportName(c.name, d.Name()), c.a.SocketPath())
		}
		if provisioned(vm, d.Name(), want) {
			continue
		}
		c.reportOnce(ctx, "provision-source:"+d.Name(), agentproto.VerbDiskProvisioned, agentproto.DiskProvisionedReport{
			VM: c.name, Disk: d.Name(), Role: want.Role, Image: want.Image, NBDURL: want.NBDURL, Epoch: want.Epoch,
		})
	}
}

// ship runs the source's replication: initial replication first, then a
// cycle every copy interval, shipped and kept until applied.
func (c *vmCtl) ship(ctx context.Context, vm events.VM, enableSeq uint64, ack cycleAck) error {
	s := &c.src.ship
	s.enableSeq = enableSeq
	if err := c.ensureStream(ctx, vm.TargetSite); err != nil {
		return err
	}
	c.serveVerify() // verify.go
	done, err := c.initialReplication(ctx, vm, enableSeq, ack)
	if err != nil || !done {
		return err
	}
	c.takeAcks(ctx, vm, ack)
	if vm.State == events.Paused {
		return nil
	}
	if bad, why := c.needsResync(); bad {
		c.reportError(ctx, agentproto.CodeResyncRequired, errors.New(why))
		return nil
	}
	if closeDue(vm.Name, s.lastClose, time.Now(), vm.Settings.CopyInterval()) && !c.finalClosed(vm) {
		if err := c.closeCycle(ctx, vm); err != nil {
			return err
		}
	}
	c.resendStale(ctx, vm)
	return c.sendPending(ctx, vm)
}

// closeDue says whether vm's next cycle is due at now, the last having
// closed at last: the first at once, then on the VM's own grid of copy
// intervals, offset by a phase drawn from its name, so that VMs protected
// together under one policy do not all close, ship and apply at the same
// instant. Closes stay at most every apart.
func closeDue(vm string, last, now time.Time, every time.Duration) bool {
	if last.IsZero() {
		return true
	}
	h := fnv.New64a()
	h.Write([]byte(vm))
	phase := int64(h.Sum64() % uint64(every))
	k := (last.UnixNano()-phase)/int64(every) + 1 // the first grid point after last
	return now.UnixNano() >= phase+k*int64(every)
}

func (c *vmCtl) ensureStream(ctx context.Context, site string) error {
	if c.src.ship.stream == site {
		return nil
	}
	if err := c.a.tr.Deltas.EnsureStream(ctx, site); err != nil {
		return err
	}
	if c.src.ship.pub != nil {
		if err := c.src.ship.pub.flush(ctx); err != nil {
			return err
		}
	}
	c.src.ship.stream = site
	c.src.ship.pub = &publisher{batches: c.a.tr.Batches, budget: c.a.budget(agentproto.DeltaStream(site))}
	return nil
}

func (c *vmCtl) needsResync() (bool, string) {
	for _, d := range c.src.disks {
		if bad, why := d.NeedsResync(); bad {
			return true, fmt.Sprintf("disk %s: %s", d.Name(), why)
		}
	}
	return false, ""
}

// closeCycle closes the current cycle on every disk together, running the
// policy's quiesce and thaw commands around an app-consistent one.
func (c *vmCtl) closeCycle(ctx context.Context, vm events.VM) error {
	s := &c.src.ship
	now := time.Now()
	app := vm.Settings.AppConsistentEvery.D() > 0 && now.Sub(s.lastApp) >= vm.Settings.AppConsistentEvery.D()
	if app && vm.Settings.QuiesceCommand != "" {
		if err := runHook(ctx, vm.Settings.QuiesceCommand); err != nil {
			c.logger.Warn().Err(err).Msg("quiesce command failed: closing a crash-consistent cycle")
			app = false
		}
	}
	var seqs []uint64
	var errs []error
	for _, d := range c.src.disks {
		seq, err := c.closeKept(d, now, app) // CloseCycle, keeping the hash tree exact
		seqs, errs = append(seqs, seq), append(errs, err)
	}
	if app && vm.Settings.ThawCommand != "" {
		if err := runHook(ctx, vm.Settings.ThawCommand); err != nil {
			c.logger.Warn().Err(err).Msg("thaw command failed")
		}
	}
	c.logger.Debug().Uints64("cycles", seqs).Dur("took", time.Since(now)).Msg("cycle closed")
	if err := errors.Join(errs...); err != nil {
		code := agentproto.CodeDiskFailed
		if errors.Is(err, disk.ErrNeedsResync) {
			code = agentproto.CodeResyncRequired
		}
		c.reportError(ctx, code, err)
		return err
	}
	s.lastClose = now
	if app {
		s.lastApp = now
	}
	if slices.Min(seqs) != slices.Max(seqs) {
		c.logger.Error().Uints64("cycles", seqs).Msg("disks closed different cycles")
		return c.alignDisks()
	}
	return nil
}

// runHook runs a policy's quiesce or thaw command with a bound.
func runHook(ctx context.Context, command string) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "/bin/sh", "-c", command).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%q: %w: %s", command, err, out)
	}
	return nil
}

// takeAcks drops from the change logs the cycles the recovery host applied,
// known from its direct acknowledgement or from its recovery points in the
// log, and reports initial replication progress.
func (c *vmCtl) takeAcks(ctx context.Context, vm events.VM, ack cycleAck) {
	s := &c.src.ship
	acked := uint64(0)
	if ack.Epoch == vm.Epoch && ack.Enable == c.enableSeqNow() {
		acked = ack.Seq
	}
	for _, p := range vm.RecoveryPoints {
		if p.Epoch == vm.Epoch {
			acked = max(acked, p.Cycle)
		}
	}
	c.reportIR(ctx, vm, acked)
	if acked <= s.ackedTo {
		return
	}
	pending := c.src.disks[0].Pending()
	if len(pending) > 0 && acked >= pending[0] {
		upTo := min(acked, pending[len(pending)-1])
		for _, d := range c.src.disks {
			if err := d.Ack(upTo); err != nil {
				c.reportError(ctx, agentproto.CodeDiskFailed, err)
				return
			}
		}
	}
	for seq := range s.sentAt {
		if seq <= acked {
			delete(s.sentAt, seq)
		}
	}
	s.ackedTo, s.ackedAt = acked, time.Now()
}

// resendStale forgets that the unacknowledged cycles were sent when the
// oldest waited too long and the recovery host's consumer has nothing left
// to deliver or acknowledge (so the cycle was lost on the way, not merely
// waiting for a recovery host that is down): they go again, with new dedup
// ids, and the recovery host drops what it applied already.
func (c *vmCtl) resendStale(ctx context.Context, vm events.VM) {
	s := &c.src.ship
	limit := max(c.a.cfg.ResendAfter, 2*vm.Settings.CopyInterval())
	var oldest uint64
	for seq, at := range s.sentAt {
		if time.Since(at) > limit && (oldest == 0 || seq < oldest) {
			oldest = seq
		}
	}
	if oldest == 0 {
		return
	}
	// A recovery host that holds batches (a gap: it waits for the missing
	// cycle) while its acks stand still is stuck, not slow: send again.
	busy, holding, err := c.consumerBusy(ctx, vm)
	// (Not during initial replication: its chunks are not kept to resend.)
	inIR := s.ir != nil && s.ackedTo < s.ir.Chunks
	stuck := holding && !inIR && time.Since(s.ackedAt) > limit
	if err != nil || (busy && !stuck) {
		for seq := range s.sentAt {
			s.sentAt[seq] = time.Now() // look again after another limit
		}
		return
	}
	if s.ir != nil && s.ackedTo < s.ir.Chunks {
		// Initial chunks are not kept by the source: the copy is broken.
		c.reportError(ctx, agentproto.CodeResyncRequired, fmt.Errorf("initial replication chunk %d lost on the way", s.ackedTo+1))
		return
	}
	if p := c.src.disks[0].Pending(); len(p) > 0 && s.ackedTo+1 < p[0] {
		// Nor are a resync's chunks: the cycle the recovery host waits
		// for is not in the change log, sending the others again would
		// loop for ever.
		c.reportError(ctx, agentproto.CodeResyncRequired, fmt.Errorf("cycle %d lost on the way; the change log keeps cycles from %d on", s.ackedTo+1, p[0]))
		return
	}
	c.logger.Warn().Uint64("cycle", oldest).Dur("after", limit).Msg("cycle lost on the way: sending the unapplied cycles again")
	clear(s.sentAt)
	s.attempt++
}

// consumerBusy says whether the VM's consumer still has messages to deliver
// or awaiting acknowledgement (or does not exist yet).
func (c *vmCtl) consumerBusy(ctx context.Context, vm events.VM) (busy, holding bool, err error) {
	pending, ackPending, err := c.a.tr.Deltas.Backlog(ctx, vm.TargetSite, vm.Name)
	if errors.Is(err, ErrConsumerNotFound) {
		return true, false, nil
	}
	if err != nil {
		return true, false, err
	}
	return pending > 0 || ackPending > 0, ackPending > 0, nil
}

// sendPending ships the closed cycles not sent yet, oldest first.
func (c *vmCtl) sendPending(ctx context.Context, vm events.VM) error {
	s := &c.src.ship
	sent := false
	start := time.Now()
	for _, seq := range c.src.disks[0].Pending() {
		if _, ok := s.sentAt[seq]; ok || seq <= s.ackedTo {
			continue
		}
		cyc, err := c.diskCycle(vm, seq)
		if err != nil {
			c.reportError(ctx, agentproto.CodeDiskFailed, err)
			return err
		}
		cyc.Roots = c.src.integrity().rootsFor(seq)
		if cyc.Roots != nil {
			cyc.RootsHash = hashtree.HashName
		}
		if err := c.publishCycle(ctx, vm, cyc); err != nil {
			c.reportError(ctx, agentproto.CodeShipFailed, err)
			return err
		}
		s.sentAt[seq] = time.Now()
		sent = true
	}
	if !sent {
		return nil
	}
	if err := s.pub.flush(ctx); err != nil {
		clear(s.sentAt)
		c.reportError(ctx, agentproto.CodeShipFailed, err)
		return err
	}
	c.logger.Debug().Dur("took", time.Since(start)).Msg("cycles shipped")
	return nil
}

// diskCycle merges cycle seq of every disk into the VM's cycle.
func (c *vmCtl) diskCycle(vm events.VM, seq uint64) (cycle.Cycle, error) {
	cyc := cycle.Cycle{VM: vm.Name, Epoch: vm.Epoch, Seq: seq}
	for _, d := range c.src.disks {
		dc, err := d.Cycle(seq)
		if err != nil {
			return cycle.Cycle{}, err
		}
		if dc.ClosedAt.After(cyc.ClosedAt) {
			cyc.ClosedAt = dc.ClosedAt
		}
		cyc.AppConsistent = dc.AppConsistent
		cyc.Extents = append(cyc.Extents, dc.Extents...)
	}
	return cyc, nil
}

// publishCycle encodes a cycle and publishes its batches (without waiting
// for the last acknowledgements: flush does). The batches are encoded one
// at a time into one reused buffer: the client copies each into its
// connection's buffer as it is published.
func (c *vmCtl) publishCycle(ctx context.Context, vm events.VM, cyc cycle.Cycle) error {
	comp := batch.CompressionNone
	if vm.Settings.Compression {
		comp = batch.CompressionS2
	}
	subject := agentproto.DeltaSubject(vm.TargetSite, c.a.cfg.Host, vm.Name, vm.Epoch)
	i := 0
	return batch.EncodeCycleEach(cyc, batch.Options{MaxPayload: c.batchLimit(), Compression: comp}, func(b []byte) error {
		id := shipMsgID(c.src.ship.enableSeq, c.src.ship.attempt, batch.MsgID(vm.Name, vm.Epoch, cyc.Seq, i))
		i++
		return c.src.ship.pub.publish(ctx, subject, id, b)
	})
}

// headerRoom is what a batch leaves of the server's max payload for the
// message's headers (the server counts them in).
const headerRoom = 4 << 10

// maxBatchBytes bounds a batch, whatever the server's max payload: many
// VMs' receivers share the recovery host's connection (pullShare), each
// pulling a few MiB at a time.
const maxBatchBytes = 1 << 20

// batchLimit is the largest batch the source publishes.
func (c *vmCtl) batchLimit() int {
	return min(int(c.a.tr.Batches.MaxPayload())-headerRoom, maxBatchBytes)
}

// shipMsgID is the Nats-Msg-Id of a batch: BatchMsgID made unique per
// protection (a VM protected again numbers its cycles from 1 again, within
// the duplicate window) and per re-send attempt (a re-send must not be
// dropped as a duplicate of the lost original).
func shipMsgID(enableSeq uint64, attempt int, batchID string) string {
	id := fmt.Sprintf("%s.p%d", batchID, enableSeq)
	if attempt > 0 {
		id = fmt.Sprintf("%s.r%d", id, attempt)
	}
	return id
}
