package handlers

import (
	"fmt"
	"strings"
	"time"

	"github.com/siterecovery/siterecovery/events"
)

// Pure decide functions of the fabric: sites, hosts (and a host's claim by
// a cloud) and policies. Each takes the state its caller loaded from
// the log and the validated request, and returns the events to append or an
// error matching an events sentinel. None does I/O.

func decideSiteRegister(s events.Site, name string) ([]events.Data, error) {
	if s.Exists() {
		return nil, alreadyExists(events.KindSite, name)
	}
	return []events.Data{events.SiteRegisteredData{Name: name}}, nil
}

// siteUnregisterState is a site and its registered hosts.
type siteUnregisterState struct {
	Site  events.Site
	Hosts []string
}

func decideSiteUnregister(st siteUnregisterState, name string) ([]events.Data, error) {
	if !st.Site.Exists() {
		return nil, notFound(events.KindSite, name)
	}
	if len(st.Hosts) > 0 {
		return nil, fmt.Errorf("site %s still has hosts (%s): unregister them first: %w",
			name, strings.Join(st.Hosts, ", "), events.ErrInvalidState)
	}
	return []events.Data{events.SiteUnregisteredData{Name: name}}, nil
}

// hostRegisterState is a host and the site it names.
type hostRegisterState struct {
	Host hostState
	Site events.Site
}

func decideHostRegister(st hostRegisterState, r hostRequest) ([]events.Data, error) {
	if st.Host.Exists() {
		return nil, alreadyExists(events.KindHost, r.Name)
	}
	if !st.Site.Exists() {
		return nil, notFound(events.KindSite, r.Site)
	}
	return []events.Data{events.HostRegisteredData{Name: r.Name, Site: r.Site}}, nil
}

// hostUnregisterState is a host and the VMs that run on it or replicate to it.
type hostUnregisterState struct {
	Host hostState
	VMs  []string
}

func decideHostUnregister(st hostUnregisterState, name string) ([]events.Data, error) {
	if !st.Host.Exists() {
		return nil, notFound(events.KindHost, name)
	}
	if st.Host.Cloud != "" {
		return nil, fmt.Errorf("host %s is in cloud %s: %w", name, st.Host.Cloud, events.ErrInvalidState)
	}
	if len(st.VMs) > 0 {
		return nil, fmt.Errorf("host %s still holds VMs (%s): %w", name, strings.Join(st.VMs, ", "), events.ErrInvalidState)
	}
	return []events.Data{events.HostUnregisteredData{Name: name}}, nil
}

// decideHostAssign claims host h for cloud (of site); nothing when the host
// is already the cloud's.
func decideHostAssign(h hostState, name, cloud, site string) ([]events.Data, error) {
	if !h.Exists() {
		return nil, notFound(events.KindHost, name)
	}
	if h.Site != site {
		return nil, fmt.Errorf("host %s is of site %s, cloud %s of site %s: %w", name, h.Site, cloud, site, events.ErrInvalidArgument)
	}
	switch h.Cloud {
	case cloud:
		return nil, nil
	case "":
		return []events.Data{events.HostAssignedData{Host: name, Cloud: cloud}}, nil
	}
	return nil, fmt.Errorf("host %s is already in cloud %s: %w", name, h.Cloud, events.ErrInvalidState)
}

// maxRetention bounds a policy's retention.
const maxRetention = 720 * time.Hour

// defaultPolicy is what a policy create leaves unset: ASR's defaults.
var defaultPolicy = events.PolicySettings{
	CopyFrequency: events.Duration(events.DefaultCopyFrequency),
	Retention:     events.Duration(24 * time.Hour),
}

// mergePolicy sets the fields the request names on s.
func mergePolicy(s events.PolicySettings, r policyRequest) events.PolicySettings {
	setDur := func(dst *events.Duration, v *events.Duration) {
		if v != nil {
			*dst = *v
		}
	}
	setDur(&s.CopyFrequency, r.CopyFrequency)
	setDur(&s.Retention, r.Retention)
	setDur(&s.AppConsistentEvery, r.AppConsistentEvery)
	setDur(&s.RPOThreshold, r.RPOThreshold)
	if r.Compression != nil {
		s.Compression = *r.Compression
	}
	if r.StartAt != nil {
		s.StartAt = r.StartAt.UTC()
	}
	if r.DeleteReplicaOnDisable != nil {
		s.DeleteReplicaOnDisable = *r.DeleteReplicaOnDisable
	}
	if r.QuiesceCommand != nil {
		s.QuiesceCommand = *r.QuiesceCommand
	}
	if r.ThawCommand != nil {
		s.ThawCommand = *r.ThawCommand
	}
	return s
}

// validatePolicy checks a policy's bounds.
func validatePolicy(s events.PolicySettings) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("policy: "+format+": %w", append(args, events.ErrInvalidArgument)...)
	}
	switch {
	case s.CopyFrequency.D() < events.MinCopyFrequency:
		return bad("copy_frequency %s is below %s", s.CopyFrequency.D(), events.MinCopyFrequency)
	case s.Retention.D() < 0 || s.Retention.D() > maxRetention:
		return bad("retention %s is not between 0 and 720h", s.Retention.D())
	case s.AppConsistentEvery.D() < 0:
		return bad("app_consistent_every %s is negative", s.AppConsistentEvery.D())
	case s.AppConsistentEvery.D() > 0 && s.AppConsistentEvery.D() >= s.Retention.D():
		return bad("app_consistent_every %s must be below the retention %s", s.AppConsistentEvery.D(), s.Retention.D())
	case s.RPOThreshold.D() < 0:
		return bad("rpo_threshold %s is negative", s.RPOThreshold.D())
	}
	return nil
}

func decidePolicyCreate(p events.Policy, r policyRequest) ([]events.Data, error) {
	if p.Exists() {
		return nil, alreadyExists(events.KindPolicy, r.Name)
	}
	s := mergePolicy(defaultPolicy, r)
	if err := validatePolicy(s); err != nil {
		return nil, err
	}
	return []events.Data{events.PolicyCreatedData{Name: r.Name, PolicySettings: s}}, nil
}

func decidePolicyUpdate(p events.Policy, r policyRequest) ([]events.Data, error) {
	if !p.Exists() {
		return nil, notFound(events.KindPolicy, r.Name)
	}
	s := mergePolicy(p.Settings, r)
	if err := validatePolicy(s); err != nil {
		return nil, err
	}
	return []events.Data{events.PolicyUpdatedData{Name: r.Name, PolicySettings: s}}, nil
}

// policyDeleteState is the policy and the live pairings that use it.
type policyDeleteState struct {
	Policy   events.Policy
	Pairings []string
}

func decidePolicyDelete(st policyDeleteState, name string) ([]events.Data, error) {
	if !st.Policy.Exists() {
		return nil, notFound(events.KindPolicy, name)
	}
	if len(st.Pairings) > 0 {
		return nil, fmt.Errorf("policy %s is used by pairing %s: delete the pairing first: %w",
			name, strings.Join(st.Pairings, ", "), events.ErrInvalidState)
	}
	return []events.Data{events.PolicyDeletedData{Name: name}}, nil
}
