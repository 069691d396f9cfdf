package handlers

import (
	"context"

	"github.com/siterecovery/siterecovery/events"
)

// Command handlers of the fabric: decode and validate the request, then run
// the steps that load state and call the pure decide functions.

// commandFunc handles one command subject's request body.
type commandFunc func(ctx context.Context, body []byte) (Result, error)

func (s *Service) siteRegister(ctx context.Context, body []byte) (Result, error) {
	var r nameRequest
	meta, err := decodeCommand(body, &r, &r.common, func() error { return token("name", r.Name) })
	if err != nil {
		return Result{}, err
	}
	return s.runOne(ctx, meta, events.SiteAgg(r.Name), func(ctx context.Context, cur aggState) ([]events.Data, error) {
		return decideSiteRegister(cur.Site, r.Name)
	})
}

func (s *Service) siteUnregister(ctx context.Context, body []byte) (Result, error) {
	var r nameRequest
	meta, err := decodeCommand(body, &r, &r.common, func() error { return token("name", r.Name) })
	if err != nil {
		return Result{}, err
	}
	return s.runOne(ctx, meta, events.SiteAgg(r.Name), func(ctx context.Context, cur aggState) ([]events.Data, error) {
		st := siteUnregisterState{Site: cur.Site}
		var err error
		if st.Site.Exists() {
			if st.Hosts, err = s.liveHostsOf(ctx, r.Name); err != nil {
				return nil, err
			}
		}
		return decideSiteUnregister(st, r.Name)
	})
}

func (s *Service) hostRegister(ctx context.Context, body []byte) (Result, error) {
	var r hostRequest
	meta, err := decodeCommand(body, &r, &r.common, func() error { return firstErr(token("name", r.Name), token("site", r.Site)) })
	if err != nil {
		return Result{}, err
	}
	return s.runOne(ctx, meta, events.HostAgg(r.Name), func(ctx context.Context, cur aggState) ([]events.Data, error) {
		site, err := s.loadSite(ctx, r.Site)
		if err != nil {
			return nil, err
		}
		return decideHostRegister(hostRegisterState{Host: cur.Host, Site: site}, r)
	})
}

func (s *Service) hostUnregister(ctx context.Context, body []byte) (Result, error) {
	var r nameRequest
	meta, err := decodeCommand(body, &r, &r.common, func() error { return token("name", r.Name) })
	if err != nil {
		return Result{}, err
	}
	return s.runOne(ctx, meta, events.HostAgg(r.Name), func(ctx context.Context, cur aggState) ([]events.Data, error) {
		st := hostUnregisterState{Host: cur.Host}
		var err error
		if st.Host.Exists() {
			st.VMs, err = s.vmsWhere(ctx, func(vm *events.VM) bool {
				return vm.ActiveHost == r.Name || vm.SourceHost == r.Name || vm.RecoveryHost == r.Name
			})
		}
		if err != nil {
			return nil, err
		}
		return decideHostUnregister(st, r.Name)
	})
}

func (s *Service) policyCreate(ctx context.Context, body []byte) (Result, error) {
	return s.policyWrite(ctx, body, decidePolicyCreate)
}

func (s *Service) policyUpdate(ctx context.Context, body []byte) (Result, error) {
	return s.policyWrite(ctx, body, decidePolicyUpdate)
}

func (s *Service) policyWrite(ctx context.Context, body []byte, decide func(events.Policy, policyRequest) ([]events.Data, error)) (Result, error) {
	var r policyRequest
	meta, err := decodeCommand(body, &r, &r.common, func() error { return token("name", r.Name) })
	if err != nil {
		return Result{}, err
	}
	return s.runOne(ctx, meta, events.PolicyAgg(r.Name), func(ctx context.Context, cur aggState) ([]events.Data, error) {
		return decide(cur.Policy, r)
	})
}

func (s *Service) policyDelete(ctx context.Context, body []byte) (Result, error) {
	var r nameRequest
	meta, err := decodeCommand(body, &r, &r.common, func() error { return token("name", r.Name) })
	if err != nil {
		return Result{}, err
	}
	return s.runOne(ctx, meta, events.PolicyAgg(r.Name), func(ctx context.Context, cur aggState) ([]events.Data, error) {
		st := policyDeleteState{Policy: cur.Policy}
		var err error
		if st.Policy.Exists() {
			st.Pairings, err = s.livePairingsUsing(ctx, r.Name)
		}
		if err != nil {
			return nil, err
		}
		return decidePolicyDelete(st, r.Name)
	})
}

func (s *Service) netmapCreate(ctx context.Context, body []byte) (Result, error) {
	var r netmapRequest
	meta, err := decodeCommand(body, &r, &r.common, func() error {
		return firstErr(token("name", r.Name), token("source_network", r.SourceNetwork), token("target_network", r.TargetNetwork))
	})
	if err != nil {
		return Result{}, err
	}
	return s.runOne(ctx, meta, events.NetmapAgg(r.Name), func(ctx context.Context, cur aggState) ([]events.Data, error) {
		return decideNetmapCreate(cur.Netmap, r)
	})
}

func (s *Service) netmapDelete(ctx context.Context, body []byte) (Result, error) {
	var r nameRequest
	meta, err := decodeCommand(body, &r, &r.common, func() error { return token("name", r.Name) })
	if err != nil {
		return Result{}, err
	}
	return s.runOne(ctx, meta, events.NetmapAgg(r.Name), func(ctx context.Context, cur aggState) ([]events.Data, error) {
		return decideNetmapDelete(cur.Netmap, r.Name)
	})
}

// runOne runs a command that appends to one aggregate.
func (s *Service) runOne(ctx context.Context, meta events.Meta, agg events.Aggregate,
	decide func(context.Context, aggState) ([]events.Data, error)) (Result, error) {
	res, err := s.runStep(ctx, meta, step{agg: agg, decide: decide})
	if err != nil {
		return Result{}, err
	}
	return newResult(meta, res), nil
}

// decodeCommand decodes body into r, whose common part is c, checks it
// with validate and stamps the command.
func decodeCommand(body []byte, r any, c *common, validate func() error) (events.Meta, error) {
	if err := decodeRequest(body, r); err != nil {
		return events.Meta{}, err
	}
	if err := validate(); err != nil {
		return events.Meta{}, err
	}
	return newMeta(*c)
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
