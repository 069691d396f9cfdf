package handlers

import (
	"fmt"

	"github.com/siterecovery/siterecovery/events"
)

// DecideVerification is pure: verification_completed, and when ranges
// differ, resync_required (only from Protected) and Critical health.
func DecideVerification(vm events.VM, point string, epoch, cycle uint64, differing []events.DiskRange) []events.Data {
	evs := []events.Data{events.VerificationCompletedData{
		SourceHost: vm.SourceHost, RecoveryHost: vm.RecoveryHost, Point: point, Epoch: epoch, Cycle: cycle,
		Equal: len(differing) == 0, Differing: differing,
	}}
	if len(differing) == 0 {
		return evs
	}
	first := differing[0]
	reason := fmt.Sprintf("verify at %s: %d differing ranges, first %s@%d+%d", point, len(differing), first.Disk, first.Offset, first.Length)
	if vm.State == events.Protected {
		evs = append(evs, events.ResyncRequiredData{Reason: reason})
	}
	if vm.Health != events.HealthCritical {
		evs = append(evs, events.HealthChangedData{Health: events.HealthCritical, Issues: []string{"integrity_mismatch: " + reason}})
	}
	return evs
}
