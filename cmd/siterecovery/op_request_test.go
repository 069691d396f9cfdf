package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/jetstream"
	"github.com/siterecovery/siterecovery/events/jetstream/jstest"
	"github.com/siterecovery/siterecovery/handlers"
	"github.com/siterecovery/siterecovery/projections"
)

// TestCommandSentAgainUntilAResponderAppears: a command sent while no
// control plane runs (the survivors of a site loss still taking over) is
// sent again with the same command_id until one answers, within the
// default --timeout, and is appended once; its --wait follows the job.
func TestCommandSentAgainUntilAResponderAppears(t *testing.T) {
	ctx := context.Background()
	srv := jstest.MustRunServer(t)
	nc := jstest.MustConnect(t, srv.ClientURL())
	log, err := jetstream.Open(ctx, nc, jetstream.Config{Logger: zerolog.Nop()})
	require.NoError(t, err)
	t.Cleanup(func() { log.Close() })

	var stdout, stderr bytes.Buffer
	done := make(chan int, 1)
	start := time.Now()
	go func() {
		done <- runOperator([]string{"site", "register", "primary", "--nats", srv.ClientURL(), "--json"}, &stdout, &stderr)
	}()
	waitCLIPublished(t, srv, 3) // three sends met no responder

	store, err := projections.Open(ctx, filepath.Join(t.TempDir(), "projections.db"), log, zerolog.Nop())
	require.NoError(t, err)
	t.Cleanup(func() { store.Close() })
	svc := handlers.New(log, store, zerolog.Nop())
	require.NoError(t, svc.Open(ctx, nc))
	t.Cleanup(func() { svc.Close(ctx) })
	select {
	case code := <-done:
		require.Equal(t, exitOK, code, "stderr: %s", stderr.String())
	case <-time.After(defaultTimeout):
		t.Fatalf("the command did not complete within the default --timeout once a control plane answered")
	}
	t.Logf("completed %s after the first send: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(stdout.String()))
	recs, err := log.Load(ctx, events.SiteAgg("primary"))
	require.NoError(t, err)
	require.Len(t, recs, 1, "site primary registered once")
	require.True(t, strings.HasPrefix(recs[0].Meta.CommandID, "cli-"), "the CLI's own command id: %s", recs[0].Meta.CommandID)
	require.Contains(t, stdout.String(), recs[0].Meta.CommandID)
	require.Contains(t, stdout.String(), `"duplicate": false`, "the first reply answers")
}

// TestCommandSentAgainAfterALostReply: a command whose append landed but
// whose reply was lost (the first send's control plane died after the
// append) is sent again with its command_id and answered as applied,
// appending nothing more.
func TestCommandSentAgainAfterALostReply(t *testing.T) {
	f := mustStartControlPlane(t)
	f.ok("site", "register", "dr", "--command-id", "lost-1")
	before := f.lastSeq()
	out := f.ok("site", "register", "dr", "--command-id", "lost-1")
	require.Contains(t, out, "already applied")
	require.Equal(t, before, f.lastSeq(), "nothing appended twice")
	f.buildFabric()
	first := f.ok("vm", "enable", "web01", "--command-id", "lost-2")
	before = f.lastSeq()
	again := f.ok("vm", "enable", "web01", "--command-id", "lost-2")
	require.Equal(t, before, f.lastSeq(), "vm enable appended once")
	require.Contains(t, again, "already applied")
	require.Contains(t, first, "job: lost-2")
	require.Contains(t, again, "job: lost-2", "the resend names the same job")
}

// TestNoControlPlaneSaysWhatWasTried: the error after --timeout names the
// attempts, how long they took and why the last one failed.
func TestNoControlPlaneSaysWhatWasTried(t *testing.T) {
	srv := jstest.MustRunServer(t)
	var stdout, stderr bytes.Buffer
	start := time.Now()
	code := runOperator([]string{"vm", "unplanned-failover", "web01", "--nats", srv.ClientURL(), "--timeout", "1s"}, &stdout, &stderr)
	require.Equal(t, exitRefused, code)
	require.Less(t, time.Since(start), 3*time.Second, "bounded by --timeout")
	msg := stderr.String()
	require.Contains(t, msg, "error: unavailable: sr.cmd.vm.unplanned_failover: no control plane answered: ")
	require.Contains(t, msg, " attempt(s) over 1")
	require.Contains(t, msg, "the last: no responders (is siterecovery serve running?)")
	n := strings.Count(msg, "attempt")
	require.Equal(t, 1, n, msg)
}

// waitCLIPublished waits until the CLI's connection published n messages.
func waitCLIPublished(t *testing.T, srv *server.Server, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		cz, err := srv.Connz(&server.ConnzOptions{})
		require.NoError(t, err)
		for _, c := range cz.Conns {
			if c.Name == "siterecovery-cli" && c.InMsgs >= n {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the CLI did not send %d requests within 10 s", n)
		}
		time.Sleep(10 * time.Millisecond) // polling the server's counters with a deadline
	}
}
