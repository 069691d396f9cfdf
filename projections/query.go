package projections

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/siterecovery/siterecovery/events"
)

// Params are the parameters of the queries; each query accepts only the
// fields it uses (and min_seq, which every query accepts: wait until the
// read models reach that log sequence before answering).
type Params struct {
	VM     string `json:"vm,omitempty"`
	Plan   string `json:"plan,omitempty"`
	Job    string `json:"job,omitempty"`
	Kind   string `json:"kind,omitempty"`
	ID     string `json:"id,omitempty"`
	Limit  int    `json:"limit,omitempty"`
	MinSeq uint64 `json:"min_seq,omitempty"`
}

// Default and largest limits of the jobs and events queries.
const (
	defaultLimit = 100
	maxLimit     = 10000
)

type query struct {
	fields []string // accepted params besides min_seq
	run    func(s *Store, ctx context.Context, p Params) (any, error)
}

// queries are the queries by name (the NATS query sr.q.<name>).
var queries = map[string]query{
	"sites":    {nil, (*Store).sites},
	"hosts":    {nil, (*Store).hosts},
	"clouds":   {nil, (*Store).clouds},
	"policies": {nil, (*Store).policies},
	"pairings": {nil, (*Store).pairings},
	"netmaps":  {nil, (*Store).netmaps},
	"vms":      {nil, (*Store).vms},
	"vm":       {[]string{"vm"}, (*Store).vm},
	"plans":    {nil, (*Store).plans},
	"plan":     {[]string{"plan"}, (*Store).plan},
	"jobs":     {[]string{"vm", "limit"}, (*Store).jobs},
	"job":      {[]string{"job"}, (*Store).job},
	"events":   {[]string{"kind", "id", "limit"}, (*Store).events},
	"status":   {nil, (*Store).status},
}

// QueryNames lists the query names Query answers, sorted.
func QueryNames() []string {
	names := make([]string, 0, len(queries))
	for n := range queries {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Query answers the query name with params (a JSON object; empty or nil for
// none). The answer marshals to the query's JSON. Errors wrap
// events.ErrInvalidArgument (unknown query, bad params),
// events.ErrNotFound (unknown vm, plan, job or aggregate), ErrClosed, or
// the context's error while waiting for min_seq.
func (s *Store) Query(ctx context.Context, name string, params json.RawMessage) (any, error) {
	q, ok := queries[name]
	if !ok {
		return nil, fmt.Errorf("unknown query %q (queries: %s): %w", name, strings.Join(QueryNames(), ", "), events.ErrInvalidArgument)
	}
	p, err := parseParams(name, q.fields, params)
	if err != nil {
		return nil, err
	}
	if p.MinSeq > 0 {
		if err := s.WaitFor(ctx, p.MinSeq); err != nil {
			return nil, fmt.Errorf("query %s: %w", name, err)
		}
	}
	return q.run(s, ctx, p)
}

func parseParams(name string, fields []string, raw json.RawMessage) (Params, error) {
	var p Params
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return p, nil
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(raw, &keys); err != nil {
		return p, fmt.Errorf("query %s: params must be a JSON object: %v: %w", name, err, events.ErrInvalidArgument)
	}
	for k := range keys {
		if k != "min_seq" && !slices.Contains(fields, k) {
			return p, fmt.Errorf("query %s: unknown param %q (accepted: %s): %w", name, k,
				strings.Join(append(slices.Clone(fields), "min_seq"), ", "), events.ErrInvalidArgument)
		}
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return p, fmt.Errorf("query %s: %v: %w", name, err, events.ErrInvalidArgument)
	}
	if p.Limit < 0 || p.Limit > maxLimit {
		return p, fmt.Errorf("query %s: limit %d is not within 0 to %d: %w", name, p.Limit, maxLimit, events.ErrInvalidArgument)
	}
	return p, nil
}

// required checks that a name param is set and is a subject token.
func required(field, value string) error {
	if value == "" {
		return fmt.Errorf("param %q is required: %w", field, events.ErrInvalidArgument)
	}
	if err := events.ValidateToken(field, value); err != nil {
		return fmt.Errorf("%w: %w", err, events.ErrInvalidArgument)
	}
	return nil
}

// readFabricView runs a view of the fabric read models, read by read
// (readFabric, or readFabricVMs for a view that needs the VMs).
func readFabricView[T any](s *Store, read func(*bolt.Tx) (fabric, error), fn func(fabric) T) (T, error) {
	var out T
	err := s.view(func(tx *bolt.Tx) error {
		f, err := read(tx)
		out = fn(f)
		return err
	})
	return out, err
}

func (s *Store) sites(_ context.Context, _ Params) (any, error) {
	return readFabricView(s, readFabric, fabric.siteViews)
}

func (s *Store) hosts(_ context.Context, _ Params) (any, error) {
	return readFabricView(s, readFabricVMs, fabric.hostViews)
}

func (s *Store) clouds(_ context.Context, _ Params) (any, error) {
	return readFabricView(s, readFabric, fabric.cloudViews)
}

func (s *Store) pairings(_ context.Context, _ Params) (any, error) {
	return readFabricView(s, readFabric, fabric.pairingViews)
}

func (s *Store) policies(_ context.Context, _ Params) (any, error) {
	var out []PolicyView
	err := s.view(func(tx *bolt.Tx) (err error) { out, err = policyViews(tx); return err })
	return out, err
}

func (s *Store) netmaps(_ context.Context, _ Params) (any, error) {
	var out []NetmapView
	err := s.view(func(tx *bolt.Tx) (err error) { out, err = netmapViews(tx); return err })
	return out, err
}

func (s *Store) vms(_ context.Context, _ Params) (any, error) {
	out := []VMView{}
	now := s.now()
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketVMs).ForEach(func(k, _ []byte) error {
			m, err := readVM(tx, string(k))
			if err == nil && m.VM.Exists() {
				out = append(out, m.view(now))
			}
			return err
		})
	})
	return out, err
}

func (s *Store) vm(_ context.Context, p Params) (any, error) {
	if err := required("vm", p.VM); err != nil {
		return nil, err
	}
	var out VMView
	err := s.view(func(tx *bolt.Tx) error {
		m, err := readVM(tx, p.VM)
		if err != nil {
			return err
		}
		if !m.VM.Exists() {
			return fmt.Errorf("vm %q: %w", p.VM, events.ErrNotFound)
		}
		out = m.view(s.now())
		return nil
	})
	return out, err
}

// readVM reads a VM's read model and its recovery points (a zero model
// when there is none).
func readVM(tx *bolt.Tx, name string) (vmModel, error) {
	m, _, err := get[vmModel](tx, bucketVMs, name)
	if err != nil {
		return m, err
	}
	m.VM.RecoveryPoints, err = readPoints(tx, name)
	return m, err
}

func (s *Store) plans(_ context.Context, _ Params) (any, error) {
	out := []PlanView{}
	err := s.view(func(tx *bolt.Tx) error {
		ps, err := all[events.Plan](tx, bucketPlans)
		for _, p := range ps {
			if !p.Exists() {
				continue
			}
			v, err := planView(tx, p)
			if err != nil {
				return err
			}
			out = append(out, v)
		}
		return err
	})
	return out, err
}

func (s *Store) plan(_ context.Context, p Params) (any, error) {
	if err := required("plan", p.Plan); err != nil {
		return nil, err
	}
	var out PlanView
	err := s.view(func(tx *bolt.Tx) error {
		pl, ok, err := get[events.Plan](tx, bucketPlans, p.Plan)
		if err != nil {
			return err
		}
		if !ok || !pl.Exists() {
			return fmt.Errorf("plan %q: %w", p.Plan, events.ErrNotFound)
		}
		out, err = planView(tx, pl)
		return err
	})
	return out, err
}

// jobs lists jobs newest first, of one VM if p.VM is set.
func (s *Store) jobs(_ context.Context, p Params) (any, error) {
	if p.VM != "" {
		if err := required("vm", p.VM); err != nil {
			return nil, err
		}
	}
	limit := cmpOr(p.Limit, defaultLimit)
	out := []Job{}
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketJobIndex).Cursor()
		for k, id := c.Last(); k != nil && len(out) < limit; k, id = c.Prev() {
			job, ok, err := get[Job](tx, bucketJobs, string(id))
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("job index %d names job %q that does not exist: %w", binary.BigEndian.Uint64(k), id, ErrCorrupt)
			}
			if p.VM == "" || (job.TargetKind == string(events.KindVM) && job.Target == p.VM) {
				out = append(out, job)
			}
		}
		return nil
	})
	return out, err
}

func (s *Store) job(_ context.Context, p Params) (any, error) {
	if p.Job == "" {
		return nil, fmt.Errorf("param \"job\" is required: %w", events.ErrInvalidArgument)
	}
	var out Job
	err := s.view(func(tx *bolt.Tx) error {
		job, ok, err := get[Job](tx, bucketJobs, p.Job)
		if err == nil && !ok {
			err = fmt.Errorf("job %q: %w", p.Job, events.ErrNotFound)
		}
		out = job
		return err
	})
	return out, err
}

func cmpOr(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}
