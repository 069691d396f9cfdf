package events

import (
	"slices"
	"time"
)

// The fabric aggregates' states. Each has Version (the log sequence of its
// last event, 0 for none) and Deleted for aggregates that were removed; a
// removed name may be used again, and its next create starts afresh.

// Site is a site's state.
type Site struct {
	Name    string
	Deleted bool
	Version uint64
}

// Exists reports whether the site is registered now.
func (s *Site) Exists() bool { return s.Version > 0 && !s.Deleted }

// Apply folds one event into the site.
func (s *Site) Apply(r Record) {
	s.Version = r.Seq
	switch d := r.Data.(type) {
	case SiteRegisteredData:
		*s = Site{Name: d.Name, Version: r.Seq}
	case SiteUnregisteredData:
		s.Deleted = true
	}
}

// Reachability is what the control plane knows of a host's agent.
type Reachability string

// The reachabilities of a host (docs/operations.md, "Host reachability").
const (
	// ReachabilityUnknown: registered, and neither heard from nor silent
	// for the unreachable threshold yet (a host just registered, or whose
	// agent has not heartbeated since).
	ReachabilityUnknown Reachability = "unknown"
	// ReachabilityReachable: a heartbeat was received (host_reachable).
	ReachabilityReachable Reachability = "reachable"
	// ReachabilityUnreachable: no heartbeat for the threshold
	// (host_unreachable).
	ReachabilityUnreachable Reachability = "unreachable"
)

// Host is a host's state.
type Host struct {
	Name string
	Site string
	// Reachability is unknown from the registration until the first
	// host_reachable or host_unreachable; read it with Reach.
	Reachability Reachability
	// Reachable is Reachability == ReachabilityReachable, kept because
	// read models stored before Reachability existed hold only it.
	Reachable bool
	// Registered is when the host was registered (its event's time).
	Registered time.Time
	// LastSeen is the last heartbeat the log records: the one that made
	// the host reachable, or the last one heard before it went
	// unreachable (zero: never heard).
	LastSeen time.Time
	Deleted  bool
	Version  uint64
}

// Exists reports whether the host is registered now.
func (h *Host) Exists() bool { return h.Version > 0 && !h.Deleted }

// Reach is the host's reachability. A state stored before Reachability
// existed says only Reachable: not reachable then is unreachable when a
// heartbeat was ever recorded, unknown when none was.
func (h *Host) Reach() Reachability {
	switch {
	case h.Reachability != "":
		return h.Reachability
	case h.Reachable:
		return ReachabilityReachable
	case !h.LastSeen.IsZero():
		return ReachabilityUnreachable
	}
	return ReachabilityUnknown
}

// Apply folds one event into the host.
func (h *Host) Apply(r Record) {
	h.Version = r.Seq
	switch d := r.Data.(type) {
	case HostRegisteredData:
		*h = Host{Name: d.Name, Site: d.Site, Reachability: ReachabilityUnknown, Registered: r.Meta.At, Version: r.Seq}
	case HostUnregisteredData:
		h.Deleted = true
	case HostReachableData:
		h.Reachability, h.Reachable, h.LastSeen = ReachabilityReachable, true, d.Since
	case HostUnreachableData:
		h.Reachability, h.Reachable = ReachabilityUnreachable, false
		if !d.LastSeen.IsZero() {
			h.LastSeen = d.LastSeen
		}
	}
}

// Cloud is a cloud's state.
type Cloud struct {
	Name    string
	Site    string
	Hosts   []string
	Version uint64
}

// Exists reports whether the cloud was created.
func (c *Cloud) Exists() bool { return c.Version > 0 }

// Apply folds one event into the cloud.
func (c *Cloud) Apply(r Record) {
	c.Version = r.Seq
	switch d := r.Data.(type) {
	case CloudCreatedData:
		*c = Cloud{Name: d.Name, Site: d.Site, Hosts: slices.Clone(d.Hosts), Version: r.Seq}
	case CloudHostAddedData:
		if !slices.Contains(c.Hosts, d.Host) {
			c.Hosts = append(c.Hosts, d.Host)
		}
	}
}

// Policy is a replication policy's state.
type Policy struct {
	Name     string
	Settings PolicySettings
	Deleted  bool
	Version  uint64
}

// Exists reports whether the policy exists now.
func (p *Policy) Exists() bool { return p.Version > 0 && !p.Deleted }

// Apply folds one event into the policy.
func (p *Policy) Apply(r Record) {
	p.Version = r.Seq
	switch d := r.Data.(type) {
	case PolicyCreatedData:
		*p = Policy{Name: d.Name, Settings: d.PolicySettings, Version: r.Seq}
	case PolicyUpdatedData:
		p.Settings = d.PolicySettings
	case PolicyDeletedData:
		p.Deleted = true
	}
}

// Pairing is a cloud pairing's state.
type Pairing struct {
	Name        string
	SourceCloud string
	TargetCloud string
	Policy      string
	Deleted     bool
	Version     uint64
}

// Exists reports whether the pairing exists now.
func (p *Pairing) Exists() bool { return p.Version > 0 && !p.Deleted }

// Apply folds one event into the pairing.
func (p *Pairing) Apply(r Record) {
	p.Version = r.Seq
	switch d := r.Data.(type) {
	case PairingCreatedData:
		*p = Pairing{Name: d.Name, SourceCloud: d.SourceCloud, TargetCloud: d.TargetCloud, Policy: d.Policy, Version: r.Seq}
	case PairingDeletedData:
		p.Deleted = true
	}
}

// Netmap is a network mapping's state.
type Netmap struct {
	Name          string
	SourceNetwork string
	TargetNetwork string
	Deleted       bool
	Version       uint64
}

// Exists reports whether the mapping exists now.
func (n *Netmap) Exists() bool { return n.Version > 0 && !n.Deleted }

// Apply folds one event into the mapping.
func (n *Netmap) Apply(r Record) {
	n.Version = r.Seq
	switch d := r.Data.(type) {
	case NetmapCreatedData:
		*n = Netmap{Name: d.Name, SourceNetwork: d.SourceNetwork, TargetNetwork: d.TargetNetwork, Version: r.Seq}
	case NetmapDeletedData:
		n.Deleted = true
	}
}

// Plan is a recovery plan's state.
type Plan struct {
	Name    string
	Groups  []PlanGroup
	Deleted bool
	// Job is the running operation's id ("" when idle); JobState its state.
	Job          string
	JobOperation string
	JobState     string
	Group        int
	Version      uint64
}

// Exists reports whether the plan exists now.
func (p *Plan) Exists() bool { return p.Version > 0 && !p.Deleted }

// Apply folds one event into the plan.
func (p *Plan) Apply(r Record) {
	p.Version = r.Seq
	switch d := r.Data.(type) {
	case PlanCreatedData:
		*p = Plan{Name: d.Name, Groups: d.Groups, Version: r.Seq}
	case PlanUpdatedData:
		p.Groups = d.Groups
	case PlanDeletedData:
		p.Deleted = true
	case PlanJobStartedData:
		p.Job, p.JobOperation, p.JobState, p.Group = d.Job, d.Operation, JobInProgress, 0
	case PlanGroupStartedData:
		p.Group = d.Group
	case PlanSuspendedData:
		p.JobState = JobSuspended
	case PlanResumedData:
		p.JobState = JobInProgress
	case PlanJobCompletedData:
		p.Job, p.JobState = "", d.State
	case PlanJobCancelledData:
		p.Job, p.JobState = "", JobCancelled
	}
}

// Automation is an automation rule's state.
type Automation struct {
	Name    string
	Rule    AutomationAddedData
	Deleted bool
	Version uint64
}

// Exists reports whether the rule exists now.
func (a *Automation) Exists() bool { return a.Version > 0 && !a.Deleted }

// Apply folds one event into the rule.
func (a *Automation) Apply(r Record) {
	a.Version = r.Seq
	switch d := r.Data.(type) {
	case AutomationAddedData:
		*a = Automation{Name: d.Name, Rule: d, Version: r.Seq}
	case AutomationRemovedData:
		a.Deleted = true
	}
}
