package httpapi_test

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/projections"
	"github.com/siterecovery/siterecovery/test/world"
)

// TestBrowserRunsATestFailover is the console's end-to-end check with the
// real system behind it: a control plane, two host agents and a protected
// VM. In the browser an operator sees the VM Protected, runs a test failover
// from its button, confirms, and watches the job complete through the live
// stream; the test VM's disk is then served at the recovery site.
func TestBrowserRunsATestFailover(t *testing.T) {
	b := startBrowser(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	w, err := world.Open(ctx, world.Config{Dir: t.TempDir(), HTTP: "127.0.0.1:0", Logger: zerolog.Nop(),
		Agent: world.AgentOptions{HeartbeatEvery: time.Second, ResendAfter: 10 * time.Second}})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, w.Close(context.Background())) })
	for _, h := range []string{"hv01", "hv02"} {
		require.NoError(t, w.StartAgent(ctx, h))
	}
	require.NoError(t, w.Build(ctx, world.Fabric{Source: "hv01", Recovery: "hv02", Policy: map[string]any{
		"name": "p2", "copy_frequency": "2s", "retention": "24h", "app_consistent_every": "1h"}}))
	require.NoError(t, w.Command(ctx, "sr.cmd.vm.create", map[string]any{"name": "web01", "host": "hv01", "disk": []string{"16MiB"}}))
	_, err = w.WaitView(ctx, "web01", 30*time.Second, "disk served", func(v projections.VMView) bool {
		return len(v.Disks) > 0 && v.Disks[0].NBDURL != ""
	})
	require.NoError(t, err)
	require.NoError(t, w.Enable(ctx, "web01"))
	_, err = w.WaitView(ctx, "web01", 60*time.Second, "Protected", func(v projections.VMView) bool {
		return v.ProtectionState == "Protected" && len(v.RecoveryPoints) > 0
	})
	require.NoError(t, err)

	b.open("http://" + w.ControlPlane().HTTPAddr().String() + "/")
	b.waitFor(jsVMState, "Protected")
	b.eval(`document.querySelector('button[data-vm="web01"][data-op="test_failover"]').click()`)
	b.waitFor(`document.getElementById('confirm').open ? 'open' : 'closed'`, "open")
	require.Contains(t, b.evalString(`document.getElementById('confirm-title').textContent`), "web01")
	b.eval(`document.getElementById('confirm-ok').click()`)

	b.waitFor(jsVMJob, "TestFailover")
	b.waitFor(`document.querySelector('#jobs tr[data-target="web01"]')?.dataset.state ?? null`, "Succeeded")
	v, err := w.WaitView(ctx, "web01", 30*time.Second, "test VM served", func(v projections.VMView) bool {
		return v.TestFailoverState == "Completed" && v.TestFailover != nil && len(v.TestFailover.Disks) > 0 &&
			v.TestFailover.Disks[0].NBDURL != ""
	})
	require.NoError(t, err)
	_, err = world.ReadExport(v.TestFailover.Disks[0].NBDURL, 16<<20)
	require.NoError(t, err, "the test VM's disk is served at the recovery site")
	b.waitFor(`[...document.querySelectorAll('button[data-vm="web01"]')].some((b) => b.dataset.op === 'test_cleanup') ? 'yes' : 'no'`, "yes")
	b.requireNoScriptErrors()
}
