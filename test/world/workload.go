package world

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/siterecovery/siterecovery/hostsync/nbd"
	"github.com/siterecovery/siterecovery/projections"
)

// Workload writes random 64 KiB blocks through a VM disk's NBD export, as
// a guest would, at a rate, until stopped; Stop flushes.
type Workload struct {
	vm      string
	client  *nbd.Client
	rate    int64 // bytes per second
	stop    chan struct{}
	done    chan error
	written int64
}

// StartWorkload starts writing rate bytes per second to the VM's first
// disk where it is served now.
func StartWorkload(v projections.VMView, rate int64) (*Workload, error) {
	if len(v.Disks) == 0 || v.Disks[0].NBDURL == "" {
		return nil, fmt.Errorf("%s: no NBD export yet", v.Name)
	}
	c, err := DialURL(v.Disks[0].NBDURL)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", v.Name, err)
	}
	w := &Workload{vm: v.Name, client: c, rate: rate, stop: make(chan struct{}), done: make(chan error, 1)}
	go func() { w.done <- w.run() }()
	return w, nil
}

func (w *Workload) run() error {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	block := make([]byte, 64<<10)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	perTick := w.rate / 20
	blocks := w.client.Size() / int64(len(block))
	for {
		select {
		case <-w.stop:
			return w.client.Flush()
		case <-tick.C:
		}
		for n := int64(0); n < perTick; n += int64(len(block)) {
			for i := range block {
				block[i] = byte(rng.Uint32())
			}
			if err := w.client.WriteAt(block, rng.Int64N(blocks)*int64(len(block)), false); err != nil {
				return fmt.Errorf("%s: %w", w.vm, err)
			}
			w.written += int64(len(block))
		}
	}
}

// Stop ends the writes with a flush and closes the connection.
func (w *Workload) Stop() error {
	close(w.stop)
	err := <-w.done
	return errors.Join(err, w.client.Close())
}

// Written is how many bytes the workload wrote; read it after Stop.
func (w *Workload) Written() int64 { return w.written }

// StopWorkloads stops every workload and joins their errors.
func StopWorkloads(loads map[string]*Workload) error {
	var errs []error
	for _, w := range loads {
		errs = append(errs, w.Stop())
	}
	return errors.Join(errs...)
}
