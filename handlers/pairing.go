package handlers

import (
	"context"
	"fmt"
	"slices"

	"github.com/siterecovery/siterecovery/events"
)

// Command handlers of the pairing: the clouds (the hosts of a site that
// replicate together), their pairings under a policy, and the network
// mappings a failed-over VM's networks follow. The decide functions are in
// pairing_decide.go.
//
// Commands that span aggregates run as sagas: claims first (host_assigned on
// each host, cloud_paired on each cloud), guarded by optimistic concurrency
// on the claimed aggregate, then the event that creates the thing. A failed
// step gives the claims back.

func validateCloudCreate(r cloudRequest) error {
	if r.Cloud != "" || r.Host != "" {
		return fmt.Errorf("cloud create takes name, site and hosts: %w", events.ErrInvalidArgument)
	}
	if err := firstErr(token("name", r.Name), token("site", r.Site)); err != nil {
		return err
	}
	for i, h := range r.Hosts {
		if err := token("hosts", h); err != nil {
			return err
		}
		if slices.Contains(r.Hosts[:i], h) {
			return fmt.Errorf("cloud create: host %s named twice: %w", h, events.ErrInvalidArgument)
		}
	}
	return nil
}

func (s *Service) cloudCreate(ctx context.Context, body []byte) (Result, error) {
	var r cloudRequest
	meta, err := decodeCommand(body, &r, &r.common, func() error { return validateCloudCreate(r) })
	if err != nil {
		return Result{}, err
	}
	create := step{agg: events.CloudAgg(r.Name), decide: func(ctx context.Context, cur aggState) ([]events.Data, error) {
		st := cloudCreateState{Cloud: cur.Cloud, Hosts: map[string]hostState{}}
		var err error
		if st.Site, err = s.loadSite(ctx, r.Site); err != nil {
			return nil, err
		}
		for _, h := range r.Hosts {
			if st.Hosts[h], err = s.loadHost(ctx, h); err != nil {
				return nil, err
			}
		}
		return decideCloudCreate(st, r)
	}}
	// Check everything before claiming, so a refused create claims nothing.
	cur, err := s.cache.load(ctx, create.agg)
	if err != nil {
		return Result{}, err
	}
	if _, dup, _ := handledBefore(cur.Marks, meta.CommandID); !dup {
		if _, err := create.decide(ctx, cur); err != nil {
			return Result{}, err
		}
	}
	steps := make([]sagaStep, 0, len(r.Hosts)+1)
	for _, h := range r.Hosts {
		steps = append(steps, s.hostClaim(h, r.Name, r.Site))
	}
	return s.runSaga(ctx, meta, append(steps, sagaStep{step: create}))
}

// hostClaim assigns host to cloud, and gives it back on undo.
func (s *Service) hostClaim(host, cloud, site string) sagaStep {
	agg := events.HostAgg(host)
	return sagaStep{
		step: step{agg: agg, decide: func(ctx context.Context, cur aggState) ([]events.Data, error) {
			return decideHostAssign(cur.Host, host, cloud, site)
		}},
		undo: &step{agg: agg, decide: func(ctx context.Context, cur aggState) ([]events.Data, error) {
			if cur.Host.Cloud != cloud {
				return nil, nil
			}
			return one(events.HostUnassignedData{Host: host, Cloud: cloud})
		}},
	}
}

func (s *Service) cloudAddHost(ctx context.Context, body []byte) (Result, error) {
	var r cloudRequest
	meta, err := decodeCommand(body, &r, &r.common, func() error {
		if r.Name != "" && r.Cloud != "" || r.Site != "" || len(r.Hosts) > 0 {
			return fmt.Errorf("cloud add_host takes cloud (or name) and host: %w", events.ErrInvalidArgument)
		}
		return firstErr(token("cloud", r.cloudName()), token("host", r.Host))
	})
	if err != nil {
		return Result{}, err
	}
	cloud := r.cloudName()
	add := step{agg: events.CloudAgg(cloud), decide: func(ctx context.Context, cur aggState) ([]events.Data, error) {
		h, err := s.loadHost(ctx, r.Host)
		if err != nil {
			return nil, err
		}
		return decideCloudAddHost(cloudAddHostState{Cloud: cur.Cloud, Host: h}, cloud, r.Host)
	}}
	cur, err := s.cache.load(ctx, add.agg)
	if err != nil {
		return Result{}, err
	}
	if _, dup, _ := handledBefore(cur.Marks, meta.CommandID); !dup {
		if _, err := add.decide(ctx, cur); err != nil {
			return Result{}, err
		}
	}
	c := cur.Cloud
	return s.runSaga(ctx, meta, []sagaStep{s.hostClaim(r.Host, cloud, c.Site), {step: add}})
}

func validatePairing(r *pairingRequest) error {
	if err := firstErr(token("source", r.Source), token("target", r.Target), token("policy", r.Policy)); err != nil {
		return err
	}
	if r.Name == "" {
		r.Name = r.Source + "-" + r.Target
	}
	return token("name", r.Name)
}

func (s *Service) pairingCreate(ctx context.Context, body []byte) (Result, error) {
	var r pairingRequest
	meta, err := decodeCommand(body, &r, &r.common, func() error { return validatePairing(&r) })
	if err != nil {
		return Result{}, err
	}
	create := step{agg: events.PairingAgg(r.Name), decide: func(ctx context.Context, cur aggState) ([]events.Data, error) {
		st := pairingCreateState{Pairing: cur.Pairing}
		var err error
		if st.Source, err = s.loadClaim(ctx, r.Source, r.Name); err != nil {
			return nil, err
		}
		if st.Target, err = s.loadClaim(ctx, r.Target, r.Name); err != nil {
			return nil, err
		}
		if st.Policy, err = s.loadPolicy(ctx, r.Policy); err != nil {
			return nil, err
		}
		return decidePairingCreate(st, r)
	}}
	cur, err := s.cache.load(ctx, create.agg)
	if err != nil {
		return Result{}, err
	}
	if _, dup, _ := handledBefore(cur.Marks, meta.CommandID); !dup {
		if _, err := create.decide(ctx, cur); err != nil {
			return Result{}, err
		}
	}
	return s.runSaga(ctx, meta, []sagaStep{
		s.cloudClaim(r.Source, r.Name, events.PairingRoleSource),
		s.cloudClaim(r.Target, r.Name, events.PairingRoleTarget),
		{step: create},
	})
}

// cloudClaim claims cloud for pairing as role, and gives it back on undo.
func (s *Service) cloudClaim(cloud, pairing, role string) sagaStep {
	agg := events.CloudAgg(cloud)
	release := func(ctx context.Context, cur aggState) ([]events.Data, error) {
		return decideCloudRelease(cur.Cloud, cloud, pairing)
	}
	return sagaStep{
		step: step{agg: agg, decide: func(ctx context.Context, cur aggState) ([]events.Data, error) {
			c, err := s.claimOf(ctx, cur.Cloud, cloud, pairing)
			if err != nil {
				return nil, err
			}
			return decideCloudClaim(c, cloud, pairing, role)
		}},
		undo: &step{agg: agg, decide: release},
	}
}

// claimOf is loadClaim for a cloud already folded.
func (s *Service) claimOf(ctx context.Context, c cloudState, name, self string) (cloudClaim, error) {
	if c.Pairing == "" || c.Pairing == self {
		return cloudClaim{Cloud: c}, nil
	}
	claim, err := s.loadClaim(ctx, name, self)
	claim.Cloud = c
	return claim, err
}

func (s *Service) pairingDelete(ctx context.Context, body []byte) (Result, error) {
	var r nameRequest
	meta, err := decodeCommand(body, &r, &r.common, func() error { return token("name", r.Name) })
	if err != nil {
		return Result{}, err
	}
	p, err := s.loadPairing(ctx, r.Name)
	if err != nil {
		return Result{}, err
	}
	del := step{agg: events.PairingAgg(r.Name), decide: func(ctx context.Context, cur aggState) ([]events.Data, error) {
		st := pairingDeleteState{Pairing: cur.Pairing}
		var err error
		if st.Pairing.Exists() {
			st.VMs, err = s.vmsWhere(ctx, func(vm *events.VM) bool {
				return vm.Pairing == r.Name && vm.State != events.Unprotected
			})
		}
		if err != nil {
			return nil, err
		}
		return decidePairingDelete(st, r.Name)
	}}
	steps := []sagaStep{{step: del}}
	for _, c := range []string{p.SourceCloud, p.TargetCloud} {
		if c != "" {
			steps = append(steps, sagaStep{step: *s.cloudClaim(c, r.Name, "").undo})
		}
	}
	return s.runSaga(ctx, meta, steps)
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
