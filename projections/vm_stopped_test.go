package projections

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
)

// TestVMViewWhileAPlannedFailoverStoppedTheSource: the disk's nbd_url is
// where the active host serves it, so there is none while a planned
// failover in progress or failed has stopped the source; a source_stopped
// that comes after the failure is a step of the failed job that says so.
func TestVMViewWhileAPlannedFailoverStoppedTheSource(t *testing.T) {
	log := events.NewMemLog()
	s := mustOpen(t, "", log)
	w := newWorld(t, log)
	w.buildFabric()
	vm := events.VMAgg("web01")
	w.emit(vm, "create", events.VMCreatedData{Name: "web01", Host: "hv01", Site: "primary", Cloud: "gold",
		Disks: []events.DiskSpec{{Name: "d0", Size: 1 << 20}}})
	w.emit(vm, "", events.DiskProvisionedData{Host: "hv01", Disk: "d0", Role: events.DiskRoleSource, Image: "/d0.img", NBDURL: "nbd+unix:///web01.d0", Epoch: 1})
	w.emit(vm, "enable", enableData("web01"), events.InitialReplicationStartedData{}, events.InitialReplicationCompletedData{})
	nbdURL := func(seq uint64) string {
		waitFor(t, s, seq)
		return queryInto[VMView](t, s, "vm", `{"vm":"web01"}`).Disks[0].NBDURL
	}
	require.Equal(t, "nbd+unix:///web01.d0", nbdURL(w.last[vm]), "Protected: served")

	seq := w.emit(vm, "pf", events.FailoverStartedData{Mode: events.FailoverPlanned, FromHost: "hv01", ToHost: "hv02"})
	require.Empty(t, nbdURL(seq), "in progress: the source stops serving")
	seq = w.emit(vm, "pf", events.FailoverFailedData{Mode: events.FailoverPlanned, Step: "stop_source", Reason: "timeout"})
	require.Empty(t, nbdURL(seq), "failed: the source stays stopped")
	seq = w.emit(vm, "pf", events.SourceStoppedData{Host: "hv01", FinalCycle: 6})
	require.Empty(t, nbdURL(seq))

	j := queryInto[Job](t, s, "job", `{"job":"pf"}`)
	require.Equal(t, events.JobFailed, j.State)
	last := j.Steps[len(j.Steps)-1]
	require.Equal(t, "source_stopped", last.Name)
	require.True(t, strings.HasPrefix(last.Detail, "hv01 stopped after cycle 6, after the failover failed"), last.Detail)

	seq = w.emit(vm, "cancel", events.FailoverCancelledData{Epoch: 2})
	require.Empty(t, nbdURL(seq), "back at epoch 2: served once the source reports its disk at that epoch")
	seq = w.emit(vm, "", events.DiskProvisionedData{Host: "hv01", Disk: "d0", Role: events.DiskRoleSource, Image: "/d0.img", NBDURL: "nbd+unix:///web01.d0", Epoch: 2})
	require.Equal(t, "nbd+unix:///web01.d0", nbdURL(seq))
}
