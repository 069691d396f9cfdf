package world

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/projections"
)

// CreateVM creates a VM with one disk of size bytes on host.
func (w *World) CreateVM(ctx context.Context, name, host, disk string, size int64) error {
	return w.Command(ctx, "sr.cmd.vm.create", map[string]any{"name": name, "host": host,
		"disks": []events.DiskSpec{{Name: disk, Size: size}}})
}

// Enable enables the VM's protection.
func (w *World) Enable(ctx context.Context, name string) error {
	return w.Command(ctx, "sr.cmd.vm.enable", map[string]any{"vm": name})
}

// VM folds a VM from the control plane's event log.
func (w *World) VM(ctx context.Context, name string) (events.VM, error) {
	recs, err := w.cp.Log().Load(ctx, events.VMAgg(name))
	if err != nil {
		return events.VM{}, err
	}
	return events.FoldVM(recs), nil
}

// WaitVM polls the VM in the log until cond holds, for at most d.
func (w *World) WaitVM(ctx context.Context, name string, d time.Duration, what string, cond func(events.VM) bool) (events.VM, error) {
	deadline := time.Now().Add(d)
	for {
		vm, err := w.VM(ctx, name)
		if err != nil {
			return vm, err
		}
		if cond(vm) {
			return vm, nil
		}
		if time.Now().After(deadline) {
			return vm, fmt.Errorf("vm %s: %s: not within %s (state %s, %d points)", name, what, d, vm.State, len(vm.RecoveryPoints))
		}
		select {
		case <-ctx.Done():
			return vm, ctx.Err()
		case <-time.After(20 * time.Millisecond): // polling the log, bounded by the deadline
		}
	}
}

// WaitProtected waits until the VM is Protected with a recovery point.
func (w *World) WaitProtected(ctx context.Context, name string, d time.Duration) (events.VM, error) {
	return w.WaitVM(ctx, name, d, "protected with a recovery point", func(vm events.VM) bool {
		_, ok := vm.RecoveryPoint("latest")
		return vm.State == events.Protected && ok
	})
}

// VMView is the VM as the vm query answers it.
func (w *World) VMView(name string) (projections.VMView, error) {
	var v projections.VMView
	err := w.Query("vm", map[string]any{"vm": name}, &v)
	return v, err
}

// SourceImage is the image file of a VM's disk on the host that runs it.
func (w *World) SourceImage(host, vm, disk string) string {
	return filepath.Join(w.HostDir(host), "vms", vm, disk+".img")
}

// ReplicaImage is the image file of a VM's disk's replica on its
// recovery host.
func (w *World) ReplicaImage(host, vm, disk string) string {
	return filepath.Join(w.HostDir(host), "replicas", vm, disk+".img")
}

// WaitView polls the vm query until cond holds, for at most d.
func (w *World) WaitView(ctx context.Context, name string, d time.Duration, what string, cond func(projections.VMView) bool) (projections.VMView, error) {
	deadline := time.Now().Add(d)
	for {
		v, err := w.VMView(name)
		if err == nil && cond(v) {
			return v, nil
		}
		if time.Now().After(deadline) {
			return v, fmt.Errorf("%s: %s not reached within %s (state %s, err %v)", name, what, d, v.ProtectionState, err)
		}
		select {
		case <-ctx.Done():
			return v, ctx.Err()
		case <-time.After(150 * time.Millisecond): // polling the read model, bounded by the deadline
		}
	}
}
