package test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/test/world"
)

// buildFabric registers two sites, a host, a cloud each, a policy and a
// pairing through the CLI.
func buildFabric(t *testing.T, url string) {
	t.Helper()
	fabric := world.Fabric{Source: "hv01", Recovery: "hv02"}
	for _, args := range fabric.CLI("p30", "--copy-frequency", "30s", "--retention", "24h", "--app-consistent-every", "4h") {
		mustCLI(t, url, args...)
	}
}

func lastSeq(t *testing.T, nc *nats.Conn) uint64 {
	t.Helper()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	s, err := js.Stream(context.Background(), "SR_EVENTS")
	require.NoError(t, err)
	info, err := s.Info(context.Background())
	require.NoError(t, err)
	return info.State.LastSeq
}

// heartbeat sends the hosts' heartbeats every second, as agents do, until
// the test ends, and waits until the control plane has heard them all.
func heartbeat(t *testing.T, url string, hosts ...string) {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	require.NoError(t, err)
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			for _, h := range hosts {
				_, _ = nc.Request("sr.cmd.agent."+h+".heartbeat", []byte(`{"agent":"test"}`), time.Second)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done; nc.Close() })
	require.Eventually(t, func() bool {
		var views []struct {
			Reachability string `json:"reachability"`
		}
		if json.Unmarshal([]byte(mustCLI(t, url, "hosts", "--json")), &views) != nil {
			return false
		}
		n := 0
		for _, v := range views {
			if v.Reachability == "reachable" {
				n++
			}
		}
		return n == len(hosts)
	}, 20*time.Second, 100*time.Millisecond, "the hosts' heartbeats heard")
}

type replyError struct {
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// rawRequest sends body as is and returns the error code ("" on success).
func rawRequest(t *testing.T, nc *nats.Conn, subject, body string) (string, []byte) {
	t.Helper()
	msg, err := nc.Request(subject, []byte(body), 10*time.Second)
	require.NoError(t, err, subject)
	var re replyError
	require.NoError(t, json.Unmarshal(msg.Data, &re), "reply %s", msg.Data)
	if re.Error != nil {
		require.Equal(t, re.Error.Code, msg.Header.Get("Nats-Service-Error-Code"), "micro error header")
		return re.Error.Code, msg.Data
	}
	return "", msg.Data
}

func countEvents(t *testing.T, url, kind, id, typ string) int {
	t.Helper()
	var hist []struct {
		Type string `json:"type"`
	}
	require.NoError(t, json.Unmarshal([]byte(mustCLI(t, url, "events", "--kind", kind, "--id", id, "--json")), &hist))
	n := 0
	for _, e := range hist {
		if e.Type == typ {
			n++
		}
	}
	return n
}

// TestControlPlaneThroughServe drives a running serve with the CLI and raw
// NATS requests: the fabric, refusals that append nothing, idempotent
// retries, racing enables, and queries that answer the same after a restart
// and after projections.db is deleted.
func TestControlPlaneThroughServe(t *testing.T) {
	data := t.TempDir()
	srv := startServe(t, data, freePort(t))
	url := srv.url()
	buildFabric(t, url)
	// The hosts heartbeat as their agents would: a host never heard from
	// turns unreachable 15 s after it registered, an event in the middle
	// of what this test compares.
	heartbeat(t, url, "hv01", "hv02")
	mustCLI(t, url, "vm", "create", "web01", "--host", "hv01", "--disk", "1GiB")

	r := cli(t, url, "vm", "planned-failover", "web01")
	require.Equal(t, 1, r.code, r.stderr)
	require.Contains(t, r.stderr, "invalid_state")
	require.Contains(t, r.stderr, "Unprotected")
	require.Equal(t, 2, cli(t, url, "vm", "frobnicate", "web01").code, "unknown verb is bad usage")

	nc, err := nats.Connect(url)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	for _, site := range []string{"primary", "secondary"} {
		require.Eventually(t, func() bool {
			_, err := js.Stream(context.Background(), "SR_DELTA_"+site)
			return err == nil
		}, 20*time.Second, 50*time.Millisecond, "the delta stream of a registered site exists")
	}
	before := lastSeq(t, nc)
	for _, c := range []struct{ subject, body, code string }{
		{"sr.cmd.site.register", `{"name": `, "invalid_argument"},
		{"sr.cmd.site.register", `{"name": "bad name"}`, "invalid_argument"},
		{"sr.cmd.site.register", `{"name": "x", "colour": "blue"}`, "invalid_argument"},
		{"sr.cmd.vm.enable", `{"vm": "nope"}`, "not_found"},
		{"sr.cmd.host.register", `{"name": "hv09", "site": "atlantis"}`, "not_found"},
		{"sr.cmd.policy.create", `{"name": "bad", "copy_frequency": "abc", "retention": "24h"}`, "invalid_argument"},
		{"sr.cmd.policy.create", `{"name": "bad", "copy_frequency": "500ms", "retention": "24h"}`, "invalid_argument"},
		{"sr.cmd.policy.create", `{"name": "bad", "copy_frequency": "30s", "retention": "721h"}`, "invalid_argument"},
		{"sr.cmd.site.register", `{"name": "primary"}`, "already_exists"},
		{"sr.cmd.vm.planned_failover", `{"vm": "web01"}`, "invalid_state"},
	} {
		code, reply := rawRequest(t, nc, c.subject, c.body)
		require.Equal(t, c.code, code, "%s %s → %s", c.subject, c.body, reply)
	}
	require.Equal(t, before, lastSeq(t, nc), "refused commands appended nothing")

	// A command retried with the same command id appends once.
	mustCLI(t, url, "site", "register", "third", "--command-id", "retry-1")
	mustCLI(t, url, "site", "register", "third", "--command-id", "retry-1")
	require.Equal(t, 1, countEvents(t, url, "site", "third", "site_registered"))

	// Twenty operators enable one VM at once: one enable is appended.
	var wg sync.WaitGroup
	codes := make([]string, 20)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], _ = rawRequest(t, nc, "sr.cmd.vm.enable", fmt.Sprintf(`{"vm": "web01", "command_id": "race-%d"}`, i))
		}()
	}
	wg.Wait()
	wins := 0
	for _, c := range codes {
		if c == "" {
			wins++
		} else {
			require.Contains(t, []string{"invalid_state", "conflict"}, c)
		}
	}
	require.Equal(t, 1, wins, "codes %v", codes)
	require.Equal(t, 1, countEvents(t, url, "vm", "web01", "protection_enable_started"))

	queries := [][]string{{"status", "--json"}, {"vms", "--json"}, {"vm", "show", "web01", "--json"},
		{"sites", "--json"}, {"hosts", "--json"}, {"jobs", "--json"}, {"plan", "ls", "--json"}}
	// A host's last_seen is its last heartbeat, which the control plane
	// hears live (heartbeats are not events): it moves on with each one.
	heard := regexp.MustCompile(`"last_seen": "[^"]+"`)
	snapshot := func() []string {
		var out []string
		for _, q := range queries {
			out = append(out, heard.ReplaceAllString(mustCLI(t, url, q...), `"last_seen": "(a heartbeat)"`))
		}
		return out
	}
	want := snapshot()

	srv.stop()
	srv = startServe(t, data, srv.port)
	require.Equal(t, want, snapshot(), "after a restart")

	srv.stop()
	require.NoError(t, os.Remove(filepath.Join(data, "projections.db")))
	srv = startServe(t, data, srv.port)
	require.Equal(t, want, snapshot(), "after projections.db was deleted and rebuilt")
	srv.stop()
}
