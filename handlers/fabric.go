package handlers

import (
	"context"

	"github.com/siterecovery/siterecovery/events"
)

// Command handlers of the fabric: sites, hosts and policies. Each decodes and
// validates the request, then runs the steps that load state and call the
// pure decide functions (fabric_decide.go).

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
