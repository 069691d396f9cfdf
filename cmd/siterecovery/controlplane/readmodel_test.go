package controlplane_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/cmd/siterecovery/controlplane"
	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/agentproto"
	"github.com/siterecovery/siterecovery/projections"
)

// mustOpen runs a control plane on its embedded server in a temp dir and
// connects to it; both end with the test.
func mustOpen(t *testing.T) *nats.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	cp, err := controlplane.Open(ctx, controlplane.Config{Data: t.TempDir(), Listen: "127.0.0.1:0"}, zerolog.Nop())
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, cp.Close(context.Background())) })
	nc, err := nats.Connect(cp.URL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}

func request(t *testing.T, nc *nats.Conn, subject string, body any) []byte {
	t.Helper()
	data, err := json.Marshal(body)
	require.NoError(t, err)
	msg, err := nc.Request(subject, data, 10*time.Second)
	require.NoError(t, err)
	require.NotContains(t, string(msg.Data), `"error"`, "%s: %s", subject, msg.Data)
	return msg.Data
}

func heartbeat(t *testing.T, nc *nats.Conn, host string) time.Time {
	t.Helper()
	at := time.Now()
	request(t, nc, agentproto.ReportSubject(host, agentproto.VerbHeartbeat), agentproto.HeartbeatReport{Agent: "test", Time: at.UTC()})
	return at
}

// hostView waits until the hosts query answers for host what ok accepts.
func hostView(t *testing.T, nc *nats.Conn, host string, within time.Duration, ok func(projections.HostView) bool) projections.HostView {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var hosts []projections.HostView
		require.NoError(t, json.Unmarshal(request(t, nc, "sr.q.hosts", map[string]any{}), &hosts))
		for _, h := range hosts {
			if h.Name == host && ok(h) {
				return h
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("hosts query: %s not as expected within %s: %+v", host, within, hosts)
		}
		time.Sleep(20 * time.Millisecond) // polling the read model for the expected answer
	}
}

// The hosts query says unknown with no last_seen until the host is heard,
// then reachable with the time of its last heartbeat, not of the one that
// made it reachable (the only one the log records).
func TestHostsQueryShowsTheLastHeartbeat(t *testing.T) {
	t.Parallel()
	nc := mustOpen(t)
	request(t, nc, "sr.cmd.site.register", map[string]any{"name": "primary"})
	request(t, nc, "sr.cmd.host.register", map[string]any{"name": "hv01", "site": "primary"})
	h := hostView(t, nc, "hv01", 5*time.Second, func(projections.HostView) bool { return true })
	require.Equal(t, events.ReachabilityUnknown, h.Reachability)
	require.Nil(t, h.LastSeen)

	first := heartbeat(t, nc, "hv01")
	h = hostView(t, nc, "hv01", 5*time.Second, func(h projections.HostView) bool { return h.Reachable })
	require.Equal(t, events.ReachabilityReachable, h.Reachability)
	require.NotNil(t, h.LastSeen)
	require.WithinDuration(t, first, *h.LastSeen, time.Second)

	second := heartbeat(t, nc, "hv01")
	require.True(t, second.After(*h.LastSeen))
	h = hostView(t, nc, "hv01", 5*time.Second, func(h projections.HostView) bool { return !h.LastSeen.Before(second) })
	require.Equal(t, events.ReachabilityReachable, h.Reachability)
	require.WithinDuration(t, second, *h.LastSeen, time.Second)
}
