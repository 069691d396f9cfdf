package handlers

import (
	"context"
	"slices"

	"github.com/siterecovery/siterecovery/events"
)

// Loaders read one aggregate folded, through the fold cache: only the
// events appended since the cached state are read from the log.

func (s *Service) loadSite(ctx context.Context, name string) (events.Site, error) {
	cur, err := s.cache.load(ctx, events.SiteAgg(name))
	return cur.Site, err
}

func (s *Service) loadHost(ctx context.Context, name string) (hostState, error) {
	cur, err := s.cache.load(ctx, events.HostAgg(name))
	return cur.Host, err
}

func (s *Service) loadCloud(ctx context.Context, name string) (cloudState, error) {
	cur, err := s.cache.load(ctx, events.CloudAgg(name))
	return cur.Cloud, err
}

func (s *Service) loadPolicy(ctx context.Context, name string) (events.Policy, error) {
	cur, err := s.cache.load(ctx, events.PolicyAgg(name))
	return cur.Policy, err
}

func (s *Service) loadPairing(ctx context.Context, name string) (events.Pairing, error) {
	cur, err := s.cache.load(ctx, events.PairingAgg(name))
	return cur.Pairing, err
}

func (s *Service) loadVM(ctx context.Context, name string) (events.VM, error) {
	cur, err := s.cache.load(ctx, events.VMAgg(name))
	return cur.View.VM, err
}

// loadHosts loads hosts in order.
func (s *Service) loadHosts(ctx context.Context, names []string) ([]hostState, error) {
	hosts := make([]hostState, 0, len(names))
	for _, n := range names {
		h, err := s.loadHost(ctx, n)
		if err != nil {
			return nil, err
		}
		hosts = append(hosts, h)
	}
	return hosts, nil
}

// loadClaim loads a cloud and the live pairing holding it, other than self.
// A claim holds while its pairing is being created or exists and names the
// cloud; a deleted pairing's claim is stale.
func (s *Service) loadClaim(ctx context.Context, name, self string) (cloudClaim, error) {
	c, err := s.loadCloud(ctx, name)
	if err != nil || c.Pairing == "" || c.Pairing == self {
		return cloudClaim{Cloud: c}, err
	}
	p, err := s.loadPairing(ctx, c.Pairing)
	if err != nil {
		return cloudClaim{}, err
	}
	if p.Version == 0 || (p.Exists() && (p.SourceCloud == name || p.TargetCloud == name)) {
		return cloudClaim{Cloud: c, HeldBy: c.Pairing}, nil
	}
	return cloudClaim{Cloud: c}, nil
}

// loadEnable loads what enable reads besides the VM.
func (s *Service) loadEnable(ctx context.Context, vm events.VM) (enableContext, error) {
	var e enableContext
	var err error
	if e.Cloud, err = s.loadCloud(ctx, vm.Cloud); err != nil || e.Cloud.Pairing == "" {
		return e, err
	}
	if e.Pairing, err = s.loadPairing(ctx, e.Cloud.Pairing); err != nil || !e.Pairing.Exists() {
		return e, err
	}
	if e.Policy, err = s.loadPolicy(ctx, e.Pairing.Policy); err != nil {
		return e, err
	}
	if e.TargetCloud, err = s.loadCloud(ctx, e.Pairing.TargetCloud); err != nil {
		return e, err
	}
	e.TargetHosts, err = s.loadHosts(ctx, e.TargetCloud.Hosts)
	return e, err
}

// liveHostsOf lists the registered hosts of site.
func (s *Service) liveHostsOf(ctx context.Context, site string) ([]string, error) {
	hosts := map[string]*hostState{}
	err := s.scan(ctx, events.KindHost, func(r events.Record) {
		h := hosts[r.Aggregate.ID]
		if h == nil {
			h = &hostState{}
			hosts[r.Aggregate.ID] = h
		}
		h.apply(r)
	})
	var out []string
	for name, h := range hosts {
		if h.Exists() && h.Site == site {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out, err
}

// vmsWhere lists the VMs whose state matches keep.
func (s *Service) vmsWhere(ctx context.Context, keep func(*events.VM) bool) ([]string, error) {
	vms := map[string]*events.VM{}
	err := s.scan(ctx, events.KindVM, func(r events.Record) {
		vm := vms[r.Aggregate.ID]
		if vm == nil {
			vm = &events.VM{}
			vms[r.Aggregate.ID] = vm
		}
		vm.Apply(r)
	})
	var out []string
	for name, vm := range vms {
		if vm.Exists() && keep(vm) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out, err
}

// livePairingsUsing lists the pairings that use policy.
func (s *Service) livePairingsUsing(ctx context.Context, policy string) ([]string, error) {
	ps := map[string]*events.Pairing{}
	err := s.scan(ctx, events.KindPairing, func(r events.Record) {
		p := ps[r.Aggregate.ID]
		if p == nil {
			p = &events.Pairing{}
			ps[r.Aggregate.ID] = p
		}
		p.Apply(r)
	})
	var out []string
	for name, p := range ps {
		if p.Exists() && p.Policy == policy {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out, err
}

// scanKind calls fn for every record of kind in log up to its current end.
func scanKind(ctx context.Context, log events.Log, kind events.Kind, fn func(events.Record)) error {
	last, err := log.LastSeq(ctx)
	if err != nil || last == 0 {
		return err
	}
	cur, err := log.Follow(ctx, 1)
	if err != nil {
		return err
	}
	defer cur.Close()
	for seq := uint64(0); seq < last; {
		recs, err := cur.Next(ctx, 1024)
		if err != nil {
			return err
		}
		for _, r := range recs {
			if r.Seq <= last && r.Aggregate.Kind == kind {
				fn(r)
			}
			seq = r.Seq
		}
	}
	return nil
}

// scan calls fn for every record of kind in the log up to its current end.
// It reads the whole log: only rare commands (deletes) use it.
func (s *Service) scan(ctx context.Context, kind events.Kind, fn func(events.Record)) error {
	return scanKind(ctx, s.log, kind, fn)
}
