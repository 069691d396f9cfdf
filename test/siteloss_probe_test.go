package test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/hostsync"
)

// TestSiteLossTakeoverProbe measures where the survivors spend the time
// after a site is lost (docs/operations.md, "Losing a site"): the cluster
// with its servers in processes of their own, the primary site lost by
// kill -9 of its server (and its control plane and agent) at a random
// point of a copy cycle, then, at once, the unplanned failover sent to the
// secondary's server every 500 ms (SR_EVENTS led by the lost server: the
// worst case) with one command_id and a 2 s timeout
// per attempt, while SR_EVENTS's leadership and the status query are
// watched. Each attempt's outcome is logged. It runs when SR_SITELOSS_PROBE
// is set (the number of rounds); the drill that must pass is
// TestSiteLossFailoverRounds.
func TestSiteLossTakeoverProbe(t *testing.T) {
	rounds := envRounds(t, "SR_SITELOSS_PROBE", 0)
	if rounds == 0 {
		t.Skip("SR_SITELOSS_PROBE=<rounds> runs the takeover probe")
	}
	for i := range rounds {
		t.Run(fmt.Sprintf("round%d", i+1), func(t *testing.T) { probeRound(t) })
	}
}

func probeRound(t *testing.T) {
	w := mustSiteWorldProcs(t)
	primary := newPlane(t, w.servers["primary"].ClientURL())
	siteLossFabric(primary)
	w.startAgent("hv01", "primary")
	w.startAgent("hv02", "secondary")
	d := w.protectedDisk(primary, hostsync.ExportName(vmName, diskName))
	w.lastPoint(d)
	w.moveStreamLeader(w.planes["secondary"].nc, "SR_EVENTS", w.servers["primary"].Name())
	leaderWas, _ := streamPeers(w.ctx, t, w.planes["secondary"].nc, "SR_EVENTS")
	time.Sleep(time.Duration(rand.Int64N(int64(time.Second)))) // a random point of the 1 s cycle, on purpose
	lost := time.Now()
	w.loseSite("primary", "hv01")
	killed := time.Since(lost)

	url := w.servers["secondary"].ClientURL()
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	defer nc.Close()
	leader := make(chan time.Duration, 1)
	go func() {
		waitStreamLeaderIn(w.ctx, t, nc, "SR_EVENTS", 60*time.Second, w.servers["secondary"].Name(), w.servers["witness"].Name())
		leader <- time.Since(lost)
	}()
	var log []string
	var status, accepted time.Duration
	for accepted == 0 && time.Since(lost) < 60*time.Second {
		at := time.Since(lost)
		if status == 0 {
			if _, err := nc.Request("sr.q.status", []byte("{}"), 2*time.Second); err == nil {
				status = time.Since(lost)
			}
		}
		msg, err := nc.Request("sr.cmd.vm.unplanned_failover",
			[]byte(`{"vm":"web01","recovery_point":"latest","command_id":"probe-1"}`), 2*time.Second)
		outcome := "ok"
		switch {
		case err != nil:
			outcome = err.Error()
		case msg.Header.Get("Nats-Service-Error-Code") != "":
			outcome = msg.Header.Get("Nats-Service-Error-Code") + " " + msg.Header.Get("Nats-Service-Error")
		default:
			accepted = time.Since(lost)
		}
		log = append(log, fmt.Sprintf("%s→%s %s", durationMS(at), durationMS(time.Since(lost)), outcome))
		if accepted == 0 {
			time.Sleep(500 * time.Millisecond) // the probe's own pace
		}
	}
	lt := <-leader
	t.Logf("SR_EVENTS led by %s before; the loss took %s; new leader %s, status answered %s, command accepted %s after the loss; attempts:\n  %s",
		leaderWas, durationMS(killed), durationMS(lt), durationMS(status), durationMS(accepted), strings.Join(log, "\n  "))
	require.NotZero(t, accepted, "the command was never accepted")
}

// envRounds reads a round count from the environment, def when unset.
func envRounds(t testing.TB, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	var n int
	_, err := fmt.Sscanf(v, "%d", &n)
	require.NoError(t, err, "%s=%q", name, v)
	return n
}

// moveStreamLeader asks the stream's leader to hand over to server (a
// no-op when it leads already) and waits until it does.
func (w *siteWorld) moveStreamLeader(nc *nats.Conn, stream, server string) {
	w.t.Helper()
	if leader, _ := streamPeers(w.ctx, w.t, nc, stream); leader == server {
		return
	}
	req := fmt.Sprintf(`{"placement":{"preferred":%q}}`, server)
	msg, err := nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+stream, []byte(req), 10*time.Second)
	require.NoError(w.t, err, "step down %s", stream)
	require.NotContains(w.t, string(msg.Data), `"error"`, "step down %s to %s", stream, server)
	waitStreamLeaderIn(w.ctx, w.t, nc, stream, 30*time.Second, server)
}
