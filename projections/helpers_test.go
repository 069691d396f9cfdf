package projections

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/siterecovery/siterecovery/events"
)

// testNow is the instant queries see in tests.
var testNow = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func withNow(now time.Time) option { return func(s *Store) { s.now = func() time.Time { return now } } }
func withBatch(n int) option       { return func(s *Store) { s.batchSize = n } }
func withAfterCommit(fn func(uint64) error) option {
	return func(s *Store) { s.afterCommit = fn }
}

// mustOpen opens a Store at path (a fresh file in a temp dir when "") that
// is closed when the test ends, after checking that no event was applied
// twice or skipped (the counter equals the checkpoint).
func mustOpen(tb testing.TB, path string, log events.Log, opts ...option) *Store {
	tb.Helper()
	if path == "" {
		path = filepath.Join(tb.TempDir(), "projections.db")
	}
	s, err := open(context.Background(), path, log, zerolog.Nop(), append([]option{withNow(testNow)}, opts...)...)
	require.NoError(tb, err)
	tb.Cleanup(func() {
		if !s.closed.Load() {
			checkCounter(tb, s)
		}
		require.NoError(tb, s.Close())
	})
	return s
}

// checkCounter checks the exactly-once invariant: the events applied in all
// equal the checkpoint, since the runner starts at sequence 1. It also
// checks that the counts of the status query equal a recount of the file.
func checkCounter(tb testing.TB, s *Store) {
	tb.Helper()
	require.NoError(tb, s.view(func(tx *bolt.Tx) error {
		cp, applied := readMeta(tx, keyCheckpoint), readMeta(tx, keyApplied)
		if cp != applied {
			return fmt.Errorf("checkpoint %d but %d events applied", cp, applied)
		}
		return nil
	}))
	checkCounts(tb, s)
}

func waitFor(tb testing.TB, s *Store, seq uint64) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(tb, s.WaitFor(ctx, seq))
}

// world appends events to a log, keeping each aggregate's last sequence.
type world struct {
	tb   testing.TB
	log  events.Log
	last map[events.Aggregate]uint64
	n    int
	at   time.Time
}

func newWorld(tb testing.TB, log events.Log) *world {
	return &world{tb: tb, log: log, last: map[events.Aggregate]uint64{}, at: testNow.Add(-time.Hour)}
}

// emit appends evs to agg under correlation id corr and returns the last
// sequence.
func (w *world) emit(agg events.Aggregate, corr string, evs ...events.Data) uint64 {
	w.tb.Helper()
	w.n++
	w.at = w.at.Add(time.Second)
	meta := events.Meta{At: w.at, CommandID: fmt.Sprintf("cmd-%d", w.n), CorrelationID: corr, Actor: "test"}
	res, err := w.log.Append(context.Background(), agg, w.last[agg], meta, evs...)
	require.NoError(w.tb, err)
	w.last[agg] = res.Last()
	return res.Last()
}

// buildFabric registers two sites, a host and a cloud in each, a policy,
// a pairing and a network mapping.
func (w *world) buildFabric() uint64 {
	w.emit(events.SiteAgg("primary"), "", events.SiteRegisteredData{Name: "primary"})
	w.emit(events.SiteAgg("secondary"), "", events.SiteRegisteredData{Name: "secondary"})
	w.emit(events.HostAgg("hv01"), "", events.HostRegisteredData{Name: "hv01", Site: "primary"})
	w.emit(events.HostAgg("hv02"), "", events.HostRegisteredData{Name: "hv02", Site: "secondary"})
	w.emit(events.HostAgg("hv01"), "", events.HostReachableData{Name: "hv01", Since: w.at})
	w.emit(events.CloudAgg("gold"), "", events.CloudCreatedData{Name: "gold", Site: "primary", Hosts: []string{"hv01"}})
	w.emit(events.CloudAgg("gold-dr"), "", events.CloudCreatedData{Name: "gold-dr", Site: "secondary"})
	w.emit(events.CloudAgg("gold-dr"), "", events.CloudHostAddedData{Cloud: "gold-dr", Host: "hv02"})
	w.emit(events.PolicyAgg("p30"), "", events.PolicyCreatedData{Name: "p30", PolicySettings: testSettings})
	w.emit(events.PairingAgg("gold"), "", events.PairingCreatedData{Name: "gold", SourceCloud: "gold", TargetCloud: "gold-dr", Policy: "p30"})
	return w.emit(events.NetmapAgg("lan"), "", events.NetmapCreatedData{Name: "lan", SourceNetwork: "lan", TargetNetwork: "lan-dr"})
}

var testSettings = events.PolicySettings{
	CopyFrequency: events.Duration(30 * time.Second), Retention: events.Duration(24 * time.Hour),
	AppConsistentEvery: events.Duration(4 * time.Hour), RPOThreshold: events.Duration(5 * time.Minute),
}

func enableData(vm string) events.ProtectionEnableStartedData {
	return events.ProtectionEnableStartedData{Pairing: "gold", Policy: "p30", Settings: testSettings,
		SourceHost: "hv01", SourceSite: "primary", RecoveryHost: "hv02", TargetSite: "secondary", TargetCloud: "gold-dr"}
}

// ask runs a query and returns its answer as JSON.
func ask(tb testing.TB, s *Store, name, params string) json.RawMessage {
	tb.Helper()
	v, err := s.Query(context.Background(), name, json.RawMessage(params))
	require.NoError(tb, err, "query %s %s", name, params)
	raw, err := json.Marshal(v)
	require.NoError(tb, err)
	return raw
}

func queryInto[T any](tb testing.TB, s *Store, name, params string) T {
	tb.Helper()
	var v T
	require.NoError(tb, json.Unmarshal(ask(tb, s, name, params), &v))
	return v
}

// testLogger writes the store's logs to the test log.
func testLogger(tb testing.TB) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(tb)).Level(zerolog.InfoLevel)
}
