package handlers

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/agentproto"
)

// hostAt is a registered host with reachability r, registered at reg and
// last heard at seen.
func hostAt(r events.Reachability, reg, seen time.Time) events.Host {
	return events.Host{Name: "hv01", Site: "primary", Reachability: r, Reachable: r == events.ReachabilityReachable,
		Registered: reg, LastSeen: seen, Version: 3}
}

func TestDecideHeartbeatEveryReachability(t *testing.T) {
	now := time.Now()
	for _, c := range []struct {
		name string
		host events.Host
		want []events.Type
		err  error
	}{
		{"not registered", events.Host{}, nil, events.ErrNotFound},
		{"deleted", events.Host{Name: "hv01", Deleted: true, Version: 4}, nil, events.ErrNotFound},
		{"unknown", hostAt(events.ReachabilityUnknown, now, time.Time{}), []events.Type{events.HostReachable}, nil},
		{"unreachable", hostAt(events.ReachabilityUnreachable, now, now.Add(-time.Hour)), []events.Type{events.HostReachable}, nil},
		{"reachable", hostAt(events.ReachabilityReachable, now, now), nil, nil},
		{"stored before reachability: reachable", events.Host{Name: "hv01", Reachable: true, Version: 2}, nil, nil},
		{"stored before reachability: not reachable", events.Host{Name: "hv01", Version: 2}, []events.Type{events.HostReachable}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			evs, err := DecideHeartbeat(c.host, "hv01", agentproto.HeartbeatReport{Agent: "v1"}, now)
			require.ErrorIs(t, err, c.err)
			require.Equal(t, c.want, agentEvTypes(evs))
		})
	}
}

func TestDecideSweepEveryReachability(t *testing.T) {
	now := time.Now()
	const threshold = 10 * time.Second
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	long := ago(time.Hour)
	unknown := hostAt(events.ReachabilityUnknown, ago(time.Hour), time.Time{})
	fresh := hostAt(events.ReachabilityUnknown, ago(5*time.Second), time.Time{})
	reachable := hostAt(events.ReachabilityReachable, long, ago(time.Minute))
	unreachable := hostAt(events.ReachabilityUnreachable, long, ago(time.Minute))
	for _, c := range []struct {
		name  string
		host  events.Host
		watch HostWatch
		want  []events.Data
	}{
		{"not registered, heard", events.Host{}, HostWatch{Heard: ago(time.Second), Watching: long}, nil},
		{"unknown, heard before its registration", fresh, HostWatch{Heard: ago(6 * time.Second), Watching: long},
			[]events.Data{events.HostReachableData{Name: "hv01", Since: ago(6 * time.Second).UTC()}}},
		{"unknown, registered within the threshold", fresh, HostWatch{Watching: long}, nil},
		{"unknown, control plane started within the threshold", unknown, HostWatch{Watching: ago(5 * time.Second)}, nil},
		{"unknown, silent past the threshold", unknown, HostWatch{Watching: ago(11 * time.Second)},
			[]events.Data{events.HostUnreachableData{Name: "hv01", LastSeen: time.Time{}}}},
		{"reachable, heard within the threshold", reachable, HostWatch{Heard: ago(5 * time.Second), Watching: long}, nil},
		{"reachable, silent past the threshold", reachable, HostWatch{Heard: ago(11 * time.Second), Watching: long},
			[]events.Data{events.HostUnreachableData{Name: "hv01", LastSeen: ago(11 * time.Second).UTC()}}},
		{"reachable, control plane started within the threshold", reachable, HostWatch{Watching: ago(5 * time.Second)}, nil},
		{"reachable, never heard by a control plane watching past the threshold", reachable, HostWatch{Watching: ago(11 * time.Second)},
			[]events.Data{events.HostUnreachableData{Name: "hv01", LastSeen: ago(time.Minute).UTC()}}},
		{"unreachable, still silent", unreachable, HostWatch{Watching: long}, nil},
		{"unreachable, heard again (its event not appended)", unreachable, HostWatch{Heard: ago(time.Second), Watching: long},
			[]events.Data{events.HostReachableData{Name: "hv01", Since: ago(time.Second).UTC()}}},
		{"stored before reachability, reachable", events.Host{Name: "hv01", Reachable: true, LastSeen: ago(time.Minute), Version: 2},
			HostWatch{Heard: ago(time.Second), Watching: long}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			require.Equal(t, c.want, DecideSweep(c.host, c.watch, now, threshold))
		})
	}
}

func TestDecideSourceEveryReachability(t *testing.T) {
	now := time.Now()
	const threshold = 10 * time.Second
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	long := ago(time.Hour)
	for _, c := range []struct {
		name     string
		host     events.Host
		watching time.Time
		want     sourceVerdict
	}{
		{"not registered", events.Host{}, long, sourceVerdict{reason: "is not registered"}},
		{"reachable", hostAt(events.ReachabilityReachable, long, ago(time.Minute)), ago(time.Second), sourceVerdict{}},
		{"unknown, just registered: wait from the registration", hostAt(events.ReachabilityUnknown, ago(2*time.Second), time.Time{}), long,
			sourceVerdict{wait: ago(2 * time.Second).Add(threshold)}},
		{"unknown, control plane just started: wait from its start", hostAt(events.ReachabilityUnknown, long, time.Time{}), ago(3 * time.Second),
			sourceVerdict{wait: ago(3 * time.Second).Add(threshold)}},
		{"unknown past the threshold", hostAt(events.ReachabilityUnknown, ago(11*time.Second), time.Time{}), long,
			sourceVerdict{reason: "was not heard from within 10s"}},
		{"unreachable, control plane just started: its knowledge is old, wait", hostAt(events.ReachabilityUnreachable, long, long), ago(3 * time.Second),
			sourceVerdict{wait: ago(3 * time.Second).Add(threshold)}},
		{"unreachable, watched past the threshold", hostAt(events.ReachabilityUnreachable, long, long), ago(11 * time.Second),
			sourceVerdict{reason: "is unreachable"}},
		{"unreachable, just observed", hostAt(events.ReachabilityUnreachable, long, long), time.Time{},
			sourceVerdict{reason: "is unreachable"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			require.Equal(t, c.want, decideSource(c.host, now, c.watching, threshold))
		})
	}
}
