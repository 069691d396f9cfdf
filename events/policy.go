package events

import "time"

// The copy frequency's rules, which the control plane applies when it
// decides a policy and the agents apply when they ship a VM's cycles.
const (
	// MinCopyFrequency is the shortest copy frequency a policy may have.
	MinCopyFrequency = time.Second
	// DefaultCopyFrequency is the copy frequency of a policy created
	// without one (Azure Site Recovery's default).
	DefaultCopyFrequency = 5 * time.Minute
	// unsetCopyInterval is the copy interval of settings that hold no copy
	// frequency (see CopyInterval).
	unsetCopyInterval = 30 * time.Second
)

// CopyInterval is how often a VM under s closes and ships a cycle: its
// copy frequency. Settings whose copy frequency is below MinCopyFrequency
// hold none (a VM whose protection started without a policy's settings,
// which the control plane never appends: it refuses a policy below
// MinCopyFrequency and gives one created without DefaultCopyFrequency);
// their interval is 30 s.
func (s PolicySettings) CopyInterval() time.Duration {
	if f := s.CopyFrequency.D(); f >= MinCopyFrequency {
		return f
	}
	return unsetCopyInterval
}
