package main

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/cmd/siterecovery/controlplane"
	"github.com/siterecovery/siterecovery/projections"
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
	d := &demo{cfg: demoConfig{Data: t.TempDir()}, out: io.Discard, logger: zerolog.Nop(), agents: map[string]*demoAgent{}, start: time.Now()}
	cp, err := controlplane.Open(ctx, controlplane.Config{Data: d.cfg.Data, Listen: "127.0.0.1:0", HTTP: "127.0.0.1:0"}, d.logger)
	require.NoError(t, err)
	d.cp, d.url = cp, cp.URL()
	t.Cleanup(func() {
		require.NoError(t, d.stopAgents())
		require.NoError(t, cp.Close(context.Background()))
	})
	for _, h := range []string{"hv01", "hv02"} {
		require.NoError(t, d.startAgent(ctx, h))
	}
	require.NoError(t, d.fabric(ctx))
	_, err = d.cli("vm", "create", "web01", "--host", "hv01", "--disk", "16MiB")
	require.NoError(t, err)
	_, err = d.waitVM(ctx, "web01", "disk served", 30*time.Second, func(v projections.VMView) bool {
		return len(v.Disks) > 0 && v.Disks[0].NBDURL != ""
	}, nil)
	require.NoError(t, err)
	_, err = d.cli("vm", "enable", "web01")
	require.NoError(t, err)
	_, err = d.waitVM(ctx, "web01", "Protected", 60*time.Second, func(v projections.VMView) bool {
		return v.ProtectionState == "Protected" && len(v.RecoveryPoints) > 0
	}, nil)
	require.NoError(t, err)

	b.open("http://" + cp.HTTPAddr().String() + "/")
	b.waitFor(jsVMState, "Protected")
	b.eval(`document.querySelector('button[data-vm="web01"][data-op="test_failover"]').click()`)
	b.waitFor(`document.getElementById('confirm').open ? 'open' : 'closed'`, "open")
	require.Contains(t, b.evalString(`document.getElementById('confirm-title').textContent`), "web01")
	b.eval(`document.getElementById('confirm-ok').click()`)

	b.waitFor(jsVMJob, "TestFailover")
	b.waitFor(`document.querySelector('#jobs tr[data-target="web01"]')?.dataset.state ?? null`, "Succeeded")
	v, err := d.waitVM(ctx, "web01", "test VM served", 30*time.Second, func(v projections.VMView) bool {
		return v.TestFailoverState == "Completed" && v.TestFailover != nil && len(v.TestFailover.Disks) > 0 &&
			v.TestFailover.Disks[0].NBDURL != ""
	}, nil)
	require.NoError(t, err)
	_, err = readExport(v.TestFailover.Disks[0].NBDURL, 16<<20)
	require.NoError(t, err, "the test VM's disk is served at the recovery site")
	b.waitFor(`[...document.querySelectorAll('button[data-vm="web01"]')].some((b) => b.dataset.op === 'test_cleanup') ? 'yes' : 'no'`, "yes")
	b.requireNoScriptErrors()
}
