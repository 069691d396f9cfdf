package projections

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/siterecovery/siterecovery/events"
)

// SiteView is an item of the sites query.
type SiteView struct {
	Name   string   `json:"name"`
	Hosts  []string `json:"hosts"`
	Clouds []string `json:"clouds"`
}

// HostView is an item of the hosts query. Reachability is unknown,
// reachable or unreachable (events.Reachability); Reachable says
// reachability == reachable, for the clients that read only it. LastSeen is
// the last heartbeat the log records (the one that made the host
// reachable, or the last before it went unreachable; null: never heard);
// the control plane answering the query brings it up to the last heartbeat
// it heard, which is not an event. VMs are the VMs the host runs.
type HostView struct {
	Name         string              `json:"name"`
	Site         string              `json:"site"`
	Reachability events.Reachability `json:"reachability"`
	Reachable    bool                `json:"reachable"`
	LastSeen     *time.Time          `json:"last_seen"`
	Clouds       []string            `json:"clouds"`
	VMs          []string            `json:"vms"`
}

// CloudView is an item of the clouds query. Pairing is the pairing the
// cloud is in, as Role "source" or "target".
type CloudView struct {
	Name    string   `json:"name"`
	Site    string   `json:"site"`
	Hosts   []string `json:"hosts"`
	Pairing string   `json:"pairing,omitempty"`
	Role    string   `json:"role,omitempty"`
}

// PolicyView is an item of the policies query: the name and the settings,
// in the JSON of events.PolicySettings.
type PolicyView struct {
	Name string `json:"name"`
	events.PolicySettings
}

// PairingView is an item of the pairings query.
type PairingView struct {
	Name        string `json:"name"`
	SourceCloud string `json:"source_cloud"`
	TargetCloud string `json:"target_cloud"`
	Policy      string `json:"policy"`
	SourceSite  string `json:"source_site"`
	TargetSite  string `json:"target_site"`
}

// NetmapView is an item of the netmaps query.
type NetmapView struct {
	Name          string `json:"name"`
	SourceNetwork string `json:"source_network"`
	TargetNetwork string `json:"target_network"`
}

// PlanView is the answer of the plan query and an item of plans. State is
// the state of the running or last job ("Idle" before the first);
// CurrentJob is the running job, if any.
type PlanView struct {
	Name       string             `json:"name"`
	Groups     []events.PlanGroup `json:"groups"`
	Job        string             `json:"job"`
	Operation  string             `json:"operation,omitempty"`
	State      string             `json:"state"`
	Group      int                `json:"group"`
	CurrentJob *Job               `json:"current_job,omitempty"`
}

// all decodes every value of bucket, in key order.
func all[T any](tx *bolt.Tx, bucket []byte) ([]T, error) {
	var out []T
	err := tx.Bucket(bucket).ForEach(func(k, raw []byte) error {
		var v T
		if err := json.Unmarshal(raw, &v); err != nil {
			return fmt.Errorf("%s/%s: %v: %w", bucket, k, err, ErrCorrupt)
		}
		out = append(out, v)
		return nil
	})
	return out, err
}

// get decodes the value of key in bucket; false when there is none.
func get[T any](tx *bolt.Tx, bucket []byte, key string) (T, bool, error) {
	var v T
	raw := tx.Bucket(bucket).Get([]byte(key))
	if raw == nil {
		return v, false, nil
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return v, false, fmt.Errorf("%s/%s: %v: %w", bucket, key, err, ErrCorrupt)
	}
	return v, true, nil
}

// fabric is the fabric read models, read in one transaction; vms only
// for the hosts query (the others do not read the VMs).
type fabric struct {
	sites    []events.Site
	hosts    []events.Host
	clouds   []events.Cloud
	pairings []events.Pairing
	vms      []vmPlace
}

// vmPlace is what the hosts query reads of a VM: decoding only these
// fields of the stored model skips its disks, images and progress.
type vmPlace struct {
	VM struct {
		Name       string
		ActiveHost string
		Version    uint64
	}
}

func (p vmPlace) exists() bool { return p.VM.Version > 0 && p.VM.Name != "" }

// readFabric reads the fabric read models but the VMs.
func readFabric(tx *bolt.Tx) (f fabric, err error) {
	if f.sites, err = all[events.Site](tx, bucketSites); err != nil {
		return f, err
	}
	if f.hosts, err = all[events.Host](tx, bucketHosts); err != nil {
		return f, err
	}
	if f.clouds, err = all[events.Cloud](tx, bucketClouds); err != nil {
		return f, err
	}
	f.pairings, err = all[events.Pairing](tx, bucketPairings)
	return f, err
}

// readFabricVMs reads the fabric read models and where each VM runs.
func readFabricVMs(tx *bolt.Tx) (f fabric, err error) {
	if f, err = readFabric(tx); err != nil {
		return f, err
	}
	f.vms, err = all[vmPlace](tx, bucketVMs)
	return f, err
}

func (f fabric) siteViews() []SiteView {
	out := []SiteView{}
	for _, s := range f.sites {
		if !s.Exists() {
			continue
		}
		v := SiteView{Name: s.Name, Hosts: []string{}, Clouds: []string{}}
		for _, h := range f.hosts {
			if h.Exists() && h.Site == s.Name {
				v.Hosts = append(v.Hosts, h.Name)
			}
		}
		for _, c := range f.clouds {
			if c.Exists() && c.Site == s.Name {
				v.Clouds = append(v.Clouds, c.Name)
			}
		}
		out = append(out, v)
	}
	return out
}

func (f fabric) hostViews() []HostView {
	out := []HostView{}
	for _, h := range f.hosts {
		if !h.Exists() {
			continue
		}
		reach := h.Reach()
		v := HostView{Name: h.Name, Site: h.Site, Reachability: reach, Reachable: reach == events.ReachabilityReachable,
			Clouds: []string{}, VMs: []string{}}
		if !h.LastSeen.IsZero() {
			t := h.LastSeen
			v.LastSeen = &t
		}
		for _, c := range f.clouds {
			if c.Exists() && slices.Contains(c.Hosts, h.Name) {
				v.Clouds = append(v.Clouds, c.Name)
			}
		}
		for _, m := range f.vms {
			if m.exists() && m.VM.ActiveHost == h.Name {
				v.VMs = append(v.VMs, m.VM.Name)
			}
		}
		out = append(out, v)
	}
	return out
}

func (f fabric) cloudViews() []CloudView {
	out := []CloudView{}
	for _, c := range f.clouds {
		if !c.Exists() {
			continue
		}
		v := CloudView{Name: c.Name, Site: c.Site, Hosts: nonNil(slices.Clone(c.Hosts))}
		for _, p := range f.pairings {
			switch {
			case !p.Exists():
			case p.SourceCloud == c.Name:
				v.Pairing, v.Role = p.Name, "source"
			case p.TargetCloud == c.Name:
				v.Pairing, v.Role = p.Name, "target"
			}
		}
		out = append(out, v)
	}
	return out
}

func (f fabric) pairingViews() []PairingView {
	site := map[string]string{}
	for _, c := range f.clouds {
		site[c.Name] = c.Site
	}
	out := []PairingView{}
	for _, p := range f.pairings {
		if p.Exists() {
			out = append(out, PairingView{Name: p.Name, SourceCloud: p.SourceCloud, TargetCloud: p.TargetCloud,
				Policy: p.Policy, SourceSite: site[p.SourceCloud], TargetSite: site[p.TargetCloud]})
		}
	}
	return out
}

func policyViews(tx *bolt.Tx) ([]PolicyView, error) {
	ps, err := all[events.Policy](tx, bucketPolicies)
	out := []PolicyView{}
	for _, p := range ps {
		if p.Exists() {
			out = append(out, PolicyView{Name: p.Name, PolicySettings: p.Settings})
		}
	}
	return out, err
}

func netmapViews(tx *bolt.Tx) ([]NetmapView, error) {
	ns, err := all[events.Netmap](tx, bucketNetmaps)
	out := []NetmapView{}
	for _, n := range ns {
		if n.Exists() {
			out = append(out, NetmapView{Name: n.Name, SourceNetwork: n.SourceNetwork, TargetNetwork: n.TargetNetwork})
		}
	}
	return out, err
}

func planView(tx *bolt.Tx, p events.Plan) (PlanView, error) {
	v := PlanView{Name: p.Name, Groups: nonNil(p.Groups), Job: p.Job, Operation: p.JobOperation, State: p.JobState, Group: p.Group}
	if v.State == "" {
		v.State = "Idle"
	}
	if p.Job == "" {
		return v, nil
	}
	job, ok, err := get[Job](tx, bucketJobs, p.Job)
	if ok {
		v.CurrentJob = &job
	}
	return v, err
}
