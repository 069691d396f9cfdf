package hostsync_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/agentproto"
	"github.com/siterecovery/siterecovery/hostsync"
)

// logSink keeps the agents' log lines (JSON), safe for concurrent use.
type logSink struct {
	mu    sync.Mutex
	lines []logLine
}

// logLine is what the tests read of a log line.
type logLine struct {
	Level   string    `json:"level"`
	Host    string    `json:"host"`
	Message string    `json:"message"`
	At      time.Time `json:"-"`
}

func (s *logSink) Write(p []byte) (int, error) {
	for _, raw := range bytes.Split(bytes.TrimSpace(p), []byte("\n")) {
		var l logLine
		if err := json.Unmarshal(raw, &l); err != nil {
			return 0, err
		}
		l.At = time.Now()
		s.mu.Lock()
		s.lines = append(s.lines, l)
		s.mu.Unlock()
	}
	return len(p), nil
}

// find returns the lines of host whose message starts with prefix.
func (s *logSink) find(host, prefix string) []logLine {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []logLine
	for _, l := range s.lines {
		if l.Host == host && strings.HasPrefix(l.Message, prefix) {
			out = append(out, l)
		}
	}
	return out
}

// waitLine waits for a line of host starting with prefix.
func (s *logSink) waitLine(t *testing.T, within time.Duration, host, prefix string) logLine {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if found := s.find(host, prefix); len(found) > 0 {
			return found[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s logged no %q within %s", host, prefix, within)
		}
		time.Sleep(20 * time.Millisecond) // polling the log lines for the expected one
	}
}

// withLogs makes the agents log at info and above into sink, and warn about
// a resync waiting for its peer after peerWarn.
func withLogs(sink *logSink, peerWarn time.Duration) func(*hostsync.AgentConfig) {
	return func(cfg *hostsync.AgentConfig) {
		cfg.Logger = zerolog.New(sink).Level(zerolog.InfoLevel)
		cfg.PeerWaitWarnAfter = peerWarn
	}
}

// The messages of a clean unplanned failover and reverse are true: the
// promoted disks start their change log without "disk needs resync"; the
// new source's resync waits for the old one (still down) at info until the
// threshold, then warns; the old source, which wrote nothing after the
// recovery point, reports no divergence and sets nothing aside.
func TestUnplannedFailoverWithoutDivergenceSaysSo(t *testing.T) {
	t.Parallel()
	sink := &logSink{}
	const peerWarn = 1500 * time.Millisecond
	w := protectFailover(t, withLogs(sink, peerWarn))
	w.qemuAt("hv01", "write -P 0x44 1M 256k")
	mark := time.Now()
	w.latestPointAfter(mark, 10*time.Second)
	w.stopAgent("hv01") // the primary host dies with everything shipped

	w.cmd("sr.cmd.vm.unplanned_failover", m{"vm": "web01", "recovery_point": "latest"})
	w.waitVM(20*time.Second, "failed over to hv11", active("hv11", 2, events.FailoverCommitPending))
	w.cmd("sr.cmd.vm.commit", m{"vm": "web01"})
	w.waitVM(10*time.Second, "committed", func(vm events.VM) bool { return vm.State == events.FailoverCommittedState })
	w.cmd("sr.cmd.vm.reverse", m{"vm": "web01"})
	waiting := sink.waitLine(t, 10*time.Second, "hv11", "resync waits for its peer")
	require.Equal(t, "info", waiting.Level)
	warned := sink.waitLine(t, peerWarn+10*time.Second, "hv11", "resync still waiting for its peer")
	require.Equal(t, "warn", warned.Level)
	require.GreaterOrEqual(t, warned.At.Sub(waiting.At), peerWarn, "warned before the threshold")
	require.Len(t, sink.find("hv11", "resync waits for its peer"), 1, "the wait is said once at info")

	w.startAgent("hv01", withLogs(sink, peerWarn))
	w.waitVM(30*time.Second, "reverse replication by resync", func(vm events.VM) bool {
		return vm.State == events.Protected && vm.SourceHost == "hv11" && vm.RecoveryHost == "hv01"
	})
	sink.waitLine(t, 5*time.Second, "hv11", "resync no longer waits for its peer")
	none := sink.waitLine(t, time.Second, "hv01", "former source: no divergence")
	require.Equal(t, "info", none.Level)
	require.Empty(t, sink.find("hv01", "former source diverged"))
	_, err := os.Stat(filepath.Join(w.dirs["hv01"], "aside"))
	require.ErrorIs(t, err, os.ErrNotExist, "nothing set aside")
	recs, err := w.log.Load(w.ctx, events.VMAgg("web01"))
	require.NoError(t, err)
	for _, r := range recs {
		require.NotEqual(t, events.DivergenceDetected, r.Type(), "no divergence recorded")
	}
	for _, host := range []string{"hv01", "hv11"} {
		require.Empty(t, sink.find(host, "disk needs resync"), "%s: a promoted disk's new change log is no loss", host)
	}

	w.qemuAt("hv11", "write -P 0x31 7M 4k")
	mark = time.Now()
	w.latestPointAfter(mark, 10*time.Second)
	requireSameBytes(t, w.imageOf("hv11", "vms/web01/d0.img"), w.imageOf("hv01", "replicas/web01/d0.img"), "replica after resync")
}

// A planned failover's final cycle is its source's last at that epoch:
// waiting for the failover to complete (the recovery host's failover_ready
// held back for three copy intervals) it closes and ships no more. One
// more would land in the recovery site's delta stream after the recovery
// host promoted and purged it, and be refused there as a stale_epoch
// replication error (the VM Critical) the next time that host is the VM's
// recovery host.
func TestPlannedFailoverShipsNothingAfterTheFinalCycle(t *testing.T) {
	t.Parallel()
	var held sync.Once
	w := protectFailover(t, func(cfg *hostsync.AgentConfig) {
		if cfg.Host != "hv11" {
			return
		}
		cfg.ReportHook = func(ctx context.Context, verb string) error {
			if verb == agentproto.VerbFailoverReady {
				held.Do(func() { // a slow report: the scenario, not a wait for a result
					select {
					case <-ctx.Done():
					case <-time.After(3 * time.Second):
					}
				})
			}
			return nil
		}
	})
	w.qemuAt("hv01", "write -P 0x5a 2M 128k")
	w.cmd("sr.cmd.vm.planned_failover", m{"vm": "web01"})
	w.waitVM(20*time.Second, "failed over to hv11", active("hv11", 2, events.FailoverCommitPending))
	stream, err := w.js().Stream(w.ctx, agentproto.DeltaStream("secondary"))
	require.NoError(t, err)
	info, err := stream.Info(w.ctx, natsjs.WithSubjectFilter(agentproto.DeltaFilter("secondary", "web01")))
	require.NoError(t, err)
	require.Empty(t, info.State.Subjects, "batches of the old epoch left after the promotion")
}
