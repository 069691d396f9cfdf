package hostsync

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
)

// An agent that starts folds the log as it was at its start before it
// hands a VM to its controller: a controller never acts on a VM's past (a
// former source coming back must not serve a disk where the VM was active
// before a failover, not even while its fold, several reads long, still
// shows that). After that, every change is handed over as it comes.
func TestAgentHandsOverVMsOnlyOnceCaughtUp(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := events.NewMemLog()
	vm := events.VMAgg("web01")
	_, err := log.Append(ctx, vm, 0, events.Meta{CommandID: "c1"},
		events.VMCreatedData{Name: "web01", Host: "hv01", Site: "primary", Cloud: "gold", Disks: []events.DiskSpec{{Name: "d0", Size: 1 << 20}}})
	require.NoError(t, err)
	for i := range 1500 { // several reads of 512
		_, err := log.Append(ctx, events.SiteAgg(fmt.Sprintf("pad%d", i)), 0,
			events.Meta{CommandID: fmt.Sprintf("pad-%d", i)}, events.SiteRegisteredData{Name: fmt.Sprintf("pad%d", i)})
		require.NoError(t, err)
	}
	provisioned := func(n int) events.Data {
		return events.DiskProvisionedData{Disk: "d0", Host: "hv01", Role: events.DiskRoleSource, Image: fmt.Sprintf("/img%d", n), Epoch: 1}
	}
	res, err := log.Append(ctx, vm, 1, events.Meta{CommandID: "c2"}, provisioned(2))
	require.NoError(t, err)
	last, err := log.LastSeq(ctx)
	require.NoError(t, err)

	handed := make(chan uint64, 16)
	r := &logReader{
		a:      &Agent{ctx: ctx, logger: zerolog.Nop()},
		folded: map[string]*vmFold{}, dirty: map[string]bool{}, next: 1, live: last + 1,
		dispatch: func(f *vmFold) { handed <- f.vm.Version },
	}
	cur, err := log.Follow(ctx, 1)
	require.NoError(t, err)
	defer cur.Close()
	go r.read(cur)
	select {
	case v := <-handed:
		require.Equal(t, res.Last(), v, "the first hand-over is the VM as it is now, not as it was")
	case <-time.After(10 * time.Second):
		t.Fatal("the VM was never handed over")
	}
	_, err = log.Append(ctx, vm, res.Last(), events.Meta{CommandID: "c3"}, provisioned(3))
	require.NoError(t, err)
	select {
	case v := <-handed:
		require.Greater(t, v, res.Last(), "a change after the catch-up is handed over")
	case <-time.After(10 * time.Second):
		t.Fatal("the change was never handed over")
	}
}
