package controlplane

import (
	"context"
	"encoding/json"
	"time"

	"github.com/siterecovery/siterecovery/handlers"
	"github.com/siterecovery/siterecovery/projections"
)

// readModel answers the service's queries from the projections, with the
// hosts' last_seen brought up to the last heartbeat this control plane
// heard: heartbeats are not events (the log records only the one that made
// a host reachable and the last one before it went silent), and every
// instance hears every heartbeat.
type readModel struct {
	*projections.Store
	// heard is when a host was last heard (the zero time: not since this
	// control plane started).
	heard func(host string) time.Time
}

var _ handlers.ReadModel = readModel{}

// Query answers name as the projections do; the hosts query gets the
// last heartbeats heard.
func (rm readModel) Query(ctx context.Context, name string, params json.RawMessage) (any, error) {
	res, err := rm.Store.Query(ctx, name, params)
	hosts, ok := res.([]projections.HostView)
	if err != nil || !ok {
		return res, err
	}
	for i := range hosts {
		heard := rm.heard(hosts[i].Name)
		if seen := hosts[i].LastSeen; !heard.IsZero() && (seen == nil || heard.After(*seen)) {
			t := heard.UTC()
			hosts[i].LastSeen = &t
		}
	}
	return hosts, nil
}
