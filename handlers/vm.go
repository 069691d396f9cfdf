package handlers

import (
	"context"
	"fmt"
	"slices"

	"github.com/siterecovery/siterecovery/events"
)

// validateVMCreate turns a vm create request into a vmCreate: disks given
// as sizes ("disk": ["4GiB"], named disk0, disk1, ...) or as
// {"name", "size"} ("disks"), not both, at least one.
func validateVMCreate(r vmCreateRequest) (vmCreate, error) {
	c := vmCreate{Name: r.Name, Host: r.Host, Networks: r.Networks}
	if err := firstErr(token("name", r.Name), token("host", r.Host)); err != nil {
		return c, err
	}
	if (len(r.Disk) == 0) == (len(r.Disks) == 0) {
		return c, fmt.Errorf("vm create: give disk sizes (disk) or disks, one of them: %w", events.ErrInvalidArgument)
	}
	c.Disks = slices.Clone(r.Disks)
	for i, sz := range r.Disk {
		size, err := ParseSize(sz)
		if err != nil {
			return c, err
		}
		c.Disks = append(c.Disks, events.DiskSpec{Name: fmt.Sprintf("disk%d", i), Size: size})
	}
	for i, d := range c.Disks {
		if err := token("disk name", d.Name); err != nil {
			return c, err
		}
		if d.Size <= 0 || d.Size%512 != 0 {
			return c, fmt.Errorf("vm create: disk %s size %d is not a positive multiple of 512: %w", d.Name, d.Size, events.ErrInvalidArgument)
		}
		if slices.ContainsFunc(c.Disks[:i], func(o events.DiskSpec) bool { return o.Name == d.Name }) {
			return c, fmt.Errorf("vm create: disk %s named twice: %w", d.Name, events.ErrInvalidArgument)
		}
	}
	for _, n := range c.Networks {
		if err := token("networks", n); err != nil {
			return c, err
		}
	}
	return c, nil
}

func (s *Service) vmCreate(ctx context.Context, body []byte) (Result, error) {
	var r vmCreateRequest
	var c vmCreate
	meta, err := decodeCommand(body, &r, &r.common, func() (err error) {
		c, err = validateVMCreate(r)
		return err
	})
	if err != nil {
		return Result{}, err
	}
	return s.runOne(ctx, meta, events.VMAgg(c.Name), func(ctx context.Context, cur aggState) ([]events.Data, error) {
		st := vmCreateState{VM: cur.View.VM}
		var err error
		if st.Host, err = s.loadHost(ctx, c.Host); err != nil || st.Host.Cloud == "" {
			return decideOrErr(st, c, err)
		}
		st.Cloud, err = s.loadCloud(ctx, st.Host.Cloud)
		return decideOrErr(st, c, err)
	})
}

func decideOrErr(st vmCreateState, c vmCreate, err error) ([]events.Data, error) {
	if err != nil {
		return nil, err
	}
	return decideVMCreate(st, c)
}

// longVMOps start an operation that a job follows.
var longVMOps = []events.Operation{
	events.OpEnable, events.OpDisable, events.OpResync, events.OpTestFailover, events.OpTestCleanup,
	events.OpPlannedFailover, events.OpUnplannedFailover, events.OpCommit, events.OpCancelFailover, events.OpReverse,
}

// vmOp returns the handler of the VM operation op.
func (s *Service) vmOp(op events.Operation) commandFunc {
	return func(ctx context.Context, body []byte) (Result, error) {
		var r vmRequest
		meta, err := decodeCommand(body, &r, &r.common, func() error {
			return firstErr(token("vm", r.VM), checkVMRequest(op, r))
		})
		if err != nil {
			return Result{}, err
		}
		res, err := s.runOne(ctx, meta, events.VMAgg(r.VM), func(ctx context.Context, cur aggState) ([]events.Data, error) {
			st := vmOpState{VM: cur.View.VM}
			var err error
			if op == events.OpEnable && st.VM.Exists() && st.VM.Check(op) == nil {
				st.Enable, err = s.loadEnable(ctx, st.VM)
			}
			if err != nil {
				return nil, err
			}
			return decideVM(st, op, r)
		})
		if err == nil && slices.Contains(longVMOps, op) {
			res.Job = res.CorrelationID
		}
		return res, err
	}
}
