package projections

import (
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/siterecovery/siterecovery/events"
)

// EventView is one event of the events query.
type EventView struct {
	Seq           uint64      `json:"seq"`
	Kind          string      `json:"kind"`
	ID            string      `json:"id"`
	Type          string      `json:"type"`
	At            time.Time   `json:"at"`
	CommandID     string      `json:"command_id"`
	CorrelationID string      `json:"correlation_id"`
	Actor         string      `json:"actor"`
	Data          events.Data `json:"data"`
}

func eventView(r events.Record) EventView {
	return EventView{Seq: r.Seq, Kind: string(r.Aggregate.Kind), ID: r.Aggregate.ID, Type: string(r.Type()),
		At: r.Meta.At, CommandID: r.Meta.CommandID, CorrelationID: r.Meta.CorrelationID, Actor: r.Meta.Actor, Data: r.Data}
}

// events answers from the log: the history of aggregate kind/id, or, with
// neither, the last limit events of the whole log.
func (s *Store) events(ctx context.Context, p Params) (any, error) {
	if p.Kind == "" && p.ID == "" {
		return s.recentEvents(ctx, cmpOr(p.Limit, defaultLimit))
	}
	agg := events.Aggregate{Kind: events.Kind(p.Kind), ID: p.ID}
	if err := agg.Validate(); err != nil {
		return nil, fmt.Errorf("query events: %w: %w", err, events.ErrInvalidArgument)
	}
	recs, err := s.log.Load(ctx, agg)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", agg, err)
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("%s %q has no events: %w", agg.Kind, agg.ID, events.ErrNotFound)
	}
	if p.Limit > 0 && len(recs) > p.Limit {
		recs = recs[len(recs)-p.Limit:]
	}
	out := make([]EventView, len(recs))
	for i, r := range recs {
		out[i] = eventView(r)
	}
	return out, nil
}

func (s *Store) recentEvents(ctx context.Context, limit int) ([]EventView, error) {
	last, err := s.log.LastSeq(ctx)
	if err != nil {
		return nil, fmt.Errorf("last sequence of the log: %w", err)
	}
	out := []EventView{}
	if last == 0 {
		return out, nil
	}
	from := uint64(1)
	if last > uint64(limit) {
		from = last - uint64(limit) + 1
	}
	cur, err := s.log.Follow(ctx, from)
	if err != nil {
		return nil, fmt.Errorf("read the log from %d: %w", from, err)
	}
	defer cur.Close()
	for len(out) == 0 || out[len(out)-1].Seq < last {
		recs, err := cur.Next(ctx, limit)
		if err != nil {
			return nil, fmt.Errorf("read the log from %d: %w", from, err)
		}
		for _, r := range recs {
			out = append(out, eventView(r))
		}
	}
	return out, nil
}

// Status is the answer of the status query: the fabric and the VMs at a
// glance.
type Status struct {
	Checkpoint      uint64 `json:"checkpoint"`
	ProjectionError string `json:"projection_error,omitempty"`
	// CatchingUp is true while the read models are behind the log or the
	// log does not answer; CatchingUpReason says which (lag.go).
	CatchingUp       bool           `json:"catching_up"`
	CatchingUpReason string         `json:"catching_up_reason,omitempty"`
	Sites            int            `json:"sites"`
	Hosts            HostCounts     `json:"hosts"`
	VMs              VMCounts       `json:"vms"`
	Jobs             map[string]int `json:"jobs"`
}

// HostCounts counts hosts by reachability.
type HostCounts struct {
	Total       int `json:"total"`
	Reachable   int `json:"reachable"`
	Unknown     int `json:"unknown"`
	Unreachable int `json:"unreachable"`
}

// VMCounts counts VMs by protection state and by health.
type VMCounts struct {
	Total             int            `json:"total"`
	ByProtectionState map[string]int `json:"by_protection_state"`
	ByHealth          map[string]int `json:"by_health"`
}

// status reads the sites and hosts (a few) and the stored counts of VMs
// and jobs (counts.go): its cost does not grow with them.
func (s *Store) status(_ context.Context, _ Params) (any, error) {
	st := Status{Checkpoint: s.Checkpoint(), Jobs: map[string]int{},
		VMs: VMCounts{ByProtectionState: map[string]int{}, ByHealth: map[string]int{}}}
	if err := s.Err(); err != nil {
		st.ProjectionError = err.Error()
	}
	st.CatchingUp, st.CatchingUpReason = s.CatchingUp()
	err := s.view(func(tx *bolt.Tx) error {
		sites, err := all[events.Site](tx, bucketSites)
		if err != nil {
			return err
		}
		hosts, err := all[events.Host](tx, bucketHosts)
		if err != nil {
			return err
		}
		counts, err := readCounts(tx)
		if err != nil {
			return err
		}
		st.countFabric(sites, hosts)
		st.fill(counts)
		return nil
	})
	return st, err
}

// countFabric counts the sites and hosts that exist; a host is reachable
// or unreachable as its last host_reachable or host_unreachable event says,
// unknown before the first.
func (st *Status) countFabric(sites []events.Site, hosts []events.Host) {
	for _, s := range sites {
		if s.Exists() {
			st.Sites++
		}
	}
	for _, h := range hosts {
		if !h.Exists() {
			continue
		}
		st.Hosts.Total++
		switch h.Reach() {
		case events.ReachabilityReachable:
			st.Hosts.Reachable++
		case events.ReachabilityUnknown:
			st.Hosts.Unknown++
		default:
			st.Hosts.Unreachable++
		}
	}
}
