package handlers

import (
	"fmt"
	"slices"
	"strings"

	"github.com/siterecovery/siterecovery/events"
)

// Pure decide functions of the pairing: clouds, pairings and the cloud
// claims between them, and network mappings.

// cloudClaim is a cloud as a pairing sees it: its state and the live pairing
// that holds it ("" when free or held by the deciding pairing itself).
type cloudClaim struct {
	Cloud  cloudState
	HeldBy string
}

// pairingCreateState is everything a pairing create checks.
type pairingCreateState struct {
	Pairing events.Pairing
	Source  cloudClaim
	Target  cloudClaim
	Policy  events.Policy
}

func decidePairingCreate(st pairingCreateState, r pairingRequest) ([]events.Data, error) {
	if st.Pairing.Exists() {
		return nil, alreadyExists(events.KindPairing, r.Name)
	}
	if r.Source == r.Target {
		return nil, fmt.Errorf("pairing %s: source and target are both cloud %s: %w", r.Name, r.Source, events.ErrInvalidArgument)
	}
	for _, c := range []struct {
		name  string
		claim cloudClaim
	}{{r.Source, st.Source}, {r.Target, st.Target}} {
		if err := checkCloudFree(c.claim, c.name); err != nil {
			return nil, err
		}
	}
	if st.Source.Cloud.Site == st.Target.Cloud.Site {
		return nil, fmt.Errorf("pairing %s: clouds %s and %s are both of site %s; a pairing joins two sites: %w",
			r.Name, r.Source, r.Target, st.Source.Cloud.Site, events.ErrInvalidArgument)
	}
	if !st.Policy.Exists() {
		return nil, notFound(events.KindPolicy, r.Policy)
	}
	return []events.Data{events.PairingCreatedData{Name: r.Name, SourceCloud: r.Source, TargetCloud: r.Target, Policy: r.Policy}}, nil
}

func checkCloudFree(c cloudClaim, name string) error {
	if !c.Cloud.Exists() {
		return notFound(events.KindCloud, name)
	}
	if c.HeldBy != "" {
		return fmt.Errorf("cloud %s is already in pairing %s: %w", name, c.HeldBy, events.ErrInvalidState)
	}
	return nil
}

// decideCloudClaim claims cloud c for pairing as role; nothing when the
// pairing holds it already.
func decideCloudClaim(c cloudClaim, name, pairing, role string) ([]events.Data, error) {
	if err := checkCloudFree(c, name); err != nil {
		return nil, err
	}
	if c.Cloud.Pairing == pairing {
		return nil, nil
	}
	return []events.Data{events.CloudPairedData{Cloud: name, Pairing: pairing, Role: role}}, nil
}

// decideCloudRelease releases cloud c's claim by pairing, if it holds one.
func decideCloudRelease(c cloudState, name, pairing string) ([]events.Data, error) {
	if c.Pairing != pairing {
		return nil, nil
	}
	return []events.Data{events.CloudUnpairedData{Cloud: name, Pairing: pairing}}, nil
}

// pairingDeleteState is the pairing and the VMs protected under it.
type pairingDeleteState struct {
	Pairing events.Pairing
	VMs     []string
}

func decidePairingDelete(st pairingDeleteState, name string) ([]events.Data, error) {
	if !st.Pairing.Exists() {
		return nil, notFound(events.KindPairing, name)
	}
	if len(st.VMs) > 0 {
		return nil, fmt.Errorf("pairing %s still protects VMs (%s): disable them first: %w",
			name, strings.Join(st.VMs, ", "), events.ErrInvalidState)
	}
	return []events.Data{events.PairingDeletedData{Name: name}}, nil
}

func decideNetmapCreate(n events.Netmap, r netmapRequest) ([]events.Data, error) {
	if n.Exists() {
		return nil, alreadyExists(events.KindNetmap, r.Name)
	}
	return []events.Data{events.NetmapCreatedData{Name: r.Name, SourceNetwork: r.SourceNetwork, TargetNetwork: r.TargetNetwork}}, nil
}

func decideNetmapDelete(n events.Netmap, name string) ([]events.Data, error) {
	if !n.Exists() {
		return nil, notFound(events.KindNetmap, name)
	}
	return []events.Data{events.NetmapDeletedData{Name: name}}, nil
}

// cloudCreateState is the cloud, its site and its hosts (by name).
type cloudCreateState struct {
	Cloud cloudState
	Site  events.Site
	Hosts map[string]hostState
}

func decideCloudCreate(st cloudCreateState, r cloudRequest) ([]events.Data, error) {
	if st.Cloud.Exists() {
		return nil, alreadyExists(events.KindCloud, r.Name)
	}
	if !st.Site.Exists() {
		return nil, notFound(events.KindSite, r.Site)
	}
	for _, h := range r.Hosts {
		if _, err := decideHostAssign(st.Hosts[h], h, r.Name, r.Site); err != nil {
			return nil, err
		}
	}
	return []events.Data{events.CloudCreatedData{Name: r.Name, Site: r.Site, Hosts: slices.Clone(r.Hosts)}}, nil
}

// cloudAddHostState is the cloud and the host to add.
type cloudAddHostState struct {
	Cloud cloudState
	Host  hostState
}

func decideCloudAddHost(st cloudAddHostState, cloud, host string) ([]events.Data, error) {
	if !st.Cloud.Exists() {
		return nil, notFound(events.KindCloud, cloud)
	}
	if slices.Contains(st.Cloud.Hosts, host) {
		return nil, fmt.Errorf("host %s is already in cloud %s: %w", host, cloud, events.ErrAlreadyExists)
	}
	if _, err := decideHostAssign(st.Host, host, cloud, st.Cloud.Site); err != nil {
		return nil, err
	}
	return []events.Data{events.CloudHostAddedData{Cloud: cloud, Host: host}}, nil
}
