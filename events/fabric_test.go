package events_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
)

// TestHostReachabilityFold: unknown from the registration until the first
// host_reachable or host_unreachable; a host registered again is unknown.
func TestHostReachabilityFold(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	rec := func(seq uint64, at time.Time, d events.Data) events.Record {
		return events.Record{Seq: seq, Aggregate: events.HostAgg("hv01"), Meta: events.Meta{At: at}, Data: d}
	}
	var h events.Host
	steps := []struct {
		rec      events.Record
		want     events.Reachability
		lastSeen time.Time
	}{
		{rec(1, t0, events.HostRegisteredData{Name: "hv01", Site: "primary"}), events.ReachabilityUnknown, time.Time{}},
		{rec(2, t0.Add(time.Second), events.HostUnreachableData{Name: "hv01"}), events.ReachabilityUnreachable, time.Time{}},
		{rec(3, t0.Add(2*time.Second), events.HostReachableData{Name: "hv01", Since: t0.Add(2 * time.Second)}), events.ReachabilityReachable, t0.Add(2 * time.Second)},
		{rec(4, t0.Add(time.Minute), events.HostUnreachableData{Name: "hv01", LastSeen: t0.Add(40 * time.Second)}), events.ReachabilityUnreachable, t0.Add(40 * time.Second)},
		{rec(5, t0.Add(2*time.Minute), events.HostUnreachableData{Name: "hv01"}), events.ReachabilityUnreachable, t0.Add(40 * time.Second)},
		{rec(6, t0.Add(3*time.Minute), events.HostUnregisteredData{Name: "hv01"}), events.ReachabilityUnreachable, t0.Add(40 * time.Second)},
		{rec(7, t0.Add(4*time.Minute), events.HostRegisteredData{Name: "hv01", Site: "primary"}), events.ReachabilityUnknown, time.Time{}},
	}
	for _, s := range steps {
		h.Apply(s.rec)
		require.Equal(t, s.want, h.Reach(), "after %s", s.rec.Type())
		require.Equal(t, s.want == events.ReachabilityReachable, h.Reachable, "after %s", s.rec.Type())
		require.Equal(t, s.lastSeen, h.LastSeen, "after %s", s.rec.Type())
	}
	require.Equal(t, t0.Add(4*time.Minute), h.Registered)
}

// TestHostReachOfAStateStoredBefore: a host state stored before
// Reachability existed (read models keep events.Host as JSON) still says
// what is known.
func TestHostReachOfAStateStoredBefore(t *testing.T) {
	for _, c := range []struct {
		stored string
		want   events.Reachability
	}{
		{`{"Name":"hv01","Site":"a","Reachable":true,"LastSeen":"2026-01-02T03:04:05Z","Version":3}`, events.ReachabilityReachable},
		{`{"Name":"hv01","Site":"a","Reachable":false,"LastSeen":"2026-01-02T03:04:05Z","Version":4}`, events.ReachabilityUnreachable},
		{`{"Name":"hv01","Site":"a","Reachable":false,"LastSeen":"0001-01-01T00:00:00Z","Version":1}`, events.ReachabilityUnknown},
	} {
		var h events.Host
		require.NoError(t, json.Unmarshal([]byte(c.stored), &h))
		require.Equal(t, c.want, h.Reach(), c.stored)
	}
}
