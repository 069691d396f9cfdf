package main

import (
	"context"
	"encoding/json"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/jetstream/jstest"
	"github.com/siterecovery/siterecovery/handlers"
)

// vm verify against the real control plane and verify handler; hv01's
// agent is a stand-in answering its verify subject (the real agents'
// comparison is tested in hostsync).
func TestOperatorVerify(t *testing.T) {
	f := mustStartControlPlane(t)
	nc := jstest.MustConnect(t, f.url)
	svc, err := micro.AddService(nc, micro.Config{Name: "siterecovery-verify", Version: "0.1.0"})
	require.NoError(t, err)
	t.Cleanup(func() { svc.Stop() })
	require.NoError(t, handlers.NewVerifyHandlers(f.log, nc, zerolog.Nop()).AddEndpoints(context.Background(), svc))
	f.buildFabric()
	f.refused("invalid_state", "vm", "verify", "web01") // not replicating yet
	f.ok("vm", "enable", "web01")

	var mu sync.Mutex
	var differing []events.DiskRange
	sub, err := nc.Subscribe("sr.agent.hv01.verify.web01", func(m *nats.Msg) {
		mu.Lock()
		defer mu.Unlock()
		data, _ := json.Marshal(map[string]any{"vm": "web01", "epoch": 1, "cycle": 7, "point": "rp-1-7", "equal": len(differing) == 0, "differing": differing})
		_ = m.Respond(data)
	})
	require.NoError(t, err)
	t.Cleanup(func() { sub.Unsubscribe() })

	require.Equal(t, "verified: equal at rp-1-7\n", f.ok("vm", "verify", "web01"))

	mu.Lock()
	differing = []events.DiskRange{{Disk: "d0", Offset: 5 << 20, Length: 64 << 10}}
	mu.Unlock()
	code, out, errOut := f.run("vm", "verify", "web01")
	require.Equal(t, exitRefused, code)
	require.Equal(t, "verified: DIFFERENT at rp-1-7\nDISK\tOFFSET\tLENGTH\nd0\t5242880\t65536\n", out)
	require.Contains(t, errOut, "error: integrity_mismatch: ")
	code, out, _ = f.run("vm", "verify", "web01", "--json")
	require.Equal(t, exitRefused, code)
	var res handlers.VerifyResult
	require.NoError(t, json.Unmarshal([]byte(out), &res))
	require.Equal(t, differing, res.Differing)

	recs, err := f.log.Load(context.Background(), events.VMAgg("web01"))
	require.NoError(t, err)
	var outcomes []bool
	for _, r := range recs {
		if d, ok := r.Data.(events.VerificationCompletedData); ok {
			outcomes = append(outcomes, d.Equal)
			require.Equal(t, "hv01", d.SourceHost)
			require.Equal(t, "hv11", d.RecoveryHost)
		}
	}
	require.Equal(t, []bool{true, false, false}, outcomes)
	require.Equal(t, events.HealthCritical, events.FoldVM(recs).Health)
	f.refused("invalid_argument", "vm", "verify", "bad.name")
}
