package projections

import (
	"context"
	"encoding/json"
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
	Checkpoint      uint64         `json:"checkpoint"`
	ProjectionError string         `json:"projection_error,omitempty"`
	Sites           int            `json:"sites"`
	Hosts           HostCounts     `json:"hosts"`
	VMs             VMCounts       `json:"vms"`
	Jobs            map[string]int `json:"jobs"`
}

// HostCounts counts hosts.
type HostCounts struct {
	Total       int `json:"total"`
	Reachable   int `json:"reachable"`
	Unreachable int `json:"unreachable"`
}

// VMCounts counts VMs by protection state and by health.
type VMCounts struct {
	Total             int            `json:"total"`
	ByProtectionState map[string]int `json:"by_protection_state"`
	ByHealth          map[string]int `json:"by_health"`
}

func (s *Store) status(_ context.Context, _ Params) (any, error) {
	st := Status{Checkpoint: s.Checkpoint(), Jobs: map[string]int{},
		VMs: VMCounts{ByProtectionState: map[string]int{}, ByHealth: map[string]int{}}}
	if err := s.Err(); err != nil {
		st.ProjectionError = err.Error()
	}
	err := s.view(func(tx *bolt.Tx) error {
		f, err := readFabric(tx)
		if err != nil {
			return err
		}
		st.count(f)
		return tx.Bucket(bucketJobs).ForEach(func(k, raw []byte) error {
			var j struct{ State string }
			if err := json.Unmarshal(raw, &j); err != nil {
				return fmt.Errorf("jobs/%s: %v: %w", k, err, ErrCorrupt)
			}
			st.Jobs[j.State]++
			return nil
		})
	})
	return st, err
}

func (st *Status) count(f fabric) {
	st.Sites = len(f.siteViews())
	for _, h := range f.hostViews() {
		st.Hosts.Total++
		if h.Reachable {
			st.Hosts.Reachable++
		} else {
			st.Hosts.Unreachable++
		}
	}
	for _, m := range f.vms {
		if !m.VM.Exists() {
			continue
		}
		st.VMs.Total++
		st.VMs.ByProtectionState[string(m.VM.State)]++
		health := m.VM.Health
		if health == "" {
			health = events.HealthNormal
		}
		st.VMs.ByHealth[health]++
	}
}
