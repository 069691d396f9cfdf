package test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/hostsync/cycle/cycletest"
	"github.com/siterecovery/siterecovery/test/world"
)

// replWorld is a replicating two-site world run as processes: serve (with
// its embedded NATS), the agent of the source host hv01 (site primary) and
// of the recovery host hv02 (site secondary), and VM web01 with disk d0
// protected by a policy with a short copy frequency.
type replWorld struct {
	t        testing.TB
	opts     worldOpts
	srv      *serveProc
	p        *plane
	src, rcv *agentProc
	disk     *diskWriter
}

// worldOpts shape a replWorld.
type worldOpts struct {
	copyFrequency string // default 2s
	rpoThreshold  string // default 4s
	// diskSize is d0's size (default 64 MiB, sparse): large enough that
	// the writes of a fault's duration stay under half the disk (a change
	// log above half the disk rightly requires a resync).
	diskSize int64
	rcvData  string // the recovery agent's data directory (default a fresh one)
}

const (
	vmName   = "web01"
	diskName = "d0"
)

// protectedWorld builds the world and waits until web01 is Protected with
// a recovery point.
func protectedWorld(t testing.TB, o worldOpts) *replWorld {
	t.Helper()
	needQEMU(t)
	o.copyFrequency = cmpOr(o.copyFrequency, "2s")
	o.rpoThreshold = cmpOr(o.rpoThreshold, "4s")
	if o.diskSize == 0 {
		o.diskSize = 64 << 20
	}
	if o.rcvData == "" {
		o.rcvData = shortDir(t)
	}
	w := &replWorld{t: t, opts: o}
	w.srv = startServe(t, t.TempDir(), freePort(t))
	w.p = newPlane(t, w.srv.url())
	w.fabric()
	w.src = startAgent(t, w.srv.url(), "hv01", shortDir(t))
	w.rcv = startAgent(t, w.srv.url(), "hv02", o.rcvData)
	v := w.p.waitVM(vmName, 30*time.Second, "source disk served over NBD", func(v vmView) bool {
		return len(v.Disks) == 1 && v.Disks[0].NBDURL != ""
	})
	w.disk = newDiskWriter(t, v.Disks[0].NBDURL, v.Disks[0].Image, o.diskSize)
	require.NoError(t, w.disk.write(0, 1<<20, 0x11), "first write before protection")
	w.p.must("sr.cmd.vm.enable", obj{"vm": vmName})
	w.p.waitVM(vmName, 40*time.Second, "protected with a recovery point", func(v vmView) bool {
		return v.ProtectionState == "Protected" && len(v.RecoveryPoints) > 0
	})
	return w
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func (w *replWorld) fabric() {
	f := world.Fabric{Source: "hv01", Recovery: "hv02", Policy: obj{"name": "fast", "copy_frequency": w.opts.copyFrequency,
		"retention": "24h", "rpo_threshold": w.opts.rpoThreshold, "compression": true}}
	for _, c := range f.Commands() {
		w.p.must(c.Subject, c.Body)
	}
	w.p.must("sr.cmd.vm.create", obj{"name": vmName, "host": "hv01", "disks": []obj{{"name": diskName, "size": w.opts.diskSize}}})
}

// replicaImage is the path of the replica of d0 on the recovery host.
func (w *replWorld) replicaImage() string {
	w.t.Helper()
	v := w.p.waitVM(vmName, 10*time.Second, "replica image known", func(v vmView) bool {
		return len(v.Disks) == 1 && v.Disks[0].ReplicaImage != ""
	})
	return v.Disks[0].ReplicaImage
}

// requireReplicaEqualsSource waits for a recovery point closed after the
// last acknowledged write and checks model, source image and replica
// image are byte-equal.
func (w *replWorld) requireReplicaEqualsSource(d time.Duration) vmView {
	w.t.Helper()
	last := w.disk.lastAck()
	v := w.p.waitVM(vmName, d, "a recovery point after the last write", pointAfter(last))
	model := w.disk.snapshot()
	requireSameBytes(w.t, model, readImage(w.t, w.disk.image), "source image vs acknowledged writes")
	requireSameBytes(w.t, model, readImage(w.t, w.replicaImage()), "replica image vs acknowledged writes")
	return v
}

func readImage(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}

// requireSameBytes compares two images, naming the first differing offset.
var requireSameBytes = cycletest.RequireSameBytes

// diskWriter writes through an NBD export with qemu-io and keeps a model
// of the disk: every write qemu-io acknowledged (followed by a flush).
type diskWriter struct {
	t     testing.TB
	url   string
	image string
	rng   *rand.Rand

	mu    sync.Mutex
	model []byte
	ack   time.Time // when the last acknowledged write returned
	n     int       // writes acknowledged
}

func newDiskWriter(t testing.TB, url, image string, size int64) *diskWriter {
	return &diskWriter{t: t, url: url, image: image, model: make([]byte, size), rng: rand.New(rand.NewPCG(7, uint64(size)))}
}

// write writes length bytes of pat at off and flushes.
func (d *diskWriter) write(off, length int64, pat byte) error {
	return d.run([]int64{off}, []int64{length}, []byte{pat})
}

// run sends the writes in one qemu-io session, then a flush; the model
// takes them once qemu-io answered all of them.
func (d *diskWriter) run(offs, lens []int64, pats []byte) error {
	args := []string{"-f", "raw"}
	for i := range offs {
		args = append(args, "-c", fmt.Sprintf("write -P 0x%02x %d %d", pats[i], offs[i], lens[i]))
	}
	args = append(args, "-c", "flush", d.url)
	out, err := exec.Command("qemu-io", args...).CombinedOutput()
	if err == nil && (strings.Contains(string(out), "error") || strings.Contains(string(out), "failed")) {
		err = fmt.Errorf("qemu-io reported a failure")
	}
	if err != nil {
		return fmt.Errorf("qemu-io %v: %w: %s", offs, err, out)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range offs {
		copy(d.model[offs[i]:offs[i]+lens[i]], bytes.Repeat([]byte{pats[i]}, int(lens[i])))
	}
	d.ack = time.Now()
	d.n += len(offs)
	return nil
}

// writeRandom writes 1 to 4 random 4 KiB-aligned runs of 4 to 64 KiB.
func (d *diskWriter) writeRandom() error {
	n := 1 + d.rng.IntN(4)
	offs, lens, pats := make([]int64, n), make([]int64, n), make([]byte, n)
	size := int64(len(d.model))
	for i := range n {
		lens[i] = int64(1+d.rng.IntN(16)) << 12
		offs[i] = d.rng.Int64N((size-lens[i])>>12+1) << 12
		pats[i] = byte(1 + d.rng.IntN(255))
	}
	return d.run(offs, lens, pats)
}

func (d *diskWriter) snapshot() []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]byte(nil), d.model...)
}

func (d *diskWriter) lastAck() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ack
}

func (d *diskWriter) acked() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n
}

// writeLoop writes random runs every period until stop is called; stop
// returns the first write error.
func (d *diskWriter) writeLoop(period time.Duration) (stop func() error) {
	quit, done := make(chan struct{}), make(chan error, 1)
	go func() {
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			if err := d.writeRandom(); err != nil {
				done <- err
				return
			}
			select {
			case <-quit:
				done <- nil
				return
			case <-t.C:
			}
		}
	}()
	var once sync.Once
	var err error
	return func() error {
		once.Do(func() { close(quit); err = <-done })
		return err
	}
}
