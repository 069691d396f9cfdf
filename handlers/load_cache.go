package handlers

import (
	"container/list"
	"context"
	"maps"
	"slices"
	"sync"

	"github.com/siterecovery/siterecovery/events"
)

// foldCacheSize bounds how many aggregates a foldCache keeps folded.
const foldCacheSize = 10_000

// aggState is one aggregate folded from its whole history: the field of its
// kind is set, the others stay zero. Seq is the sequence of the last event
// folded, the version an append made on this state must carry.
type aggState struct {
	Seq        uint64
	View       vmView // vm (View.VM is events.VM)
	Host       hostState
	Cloud      cloudState
	Site       events.Site
	Policy     events.Policy
	Pairing    events.Pairing
	Netmap     events.Netmap
	Run        planRun // plan (Run.plan is events.Plan)
	Automation events.Automation
	// Executed are the sequences of the events whose outcome an automation
	// rule recorded (automation_executed), in log order.
	Executed []uint64
	// Marks are the aggregate's events but the routine ones (routineTypes):
	// what idempotency checks (handledBefore) and operation outcomes
	// (issuedAt, vmOutcome) scan. They grow with operations, not with time.
	Marks []events.Record
}

// routineTypes are the events that come on their own schedule, every copy
// cycle, progress tick or heartbeat change: they are folded into the state
// but not kept in Marks. Only the agent reports of agent.go append them
// (appendVM, appendAgg), and those never check handledBefore (the log's own
// msg-id dedup covers a re-sent report), as the automation runner keeps
// its outcomes in Executed: no idempotency check ever needs their command
// ids. An event type appended by a path that checks handledBefore (the
// failover reports' resync_progress, say) must not be here.
var routineTypes = map[events.Type]bool{
	events.RecoveryPointCreated: true, events.RecoveryPointsPruned: true,
	events.InitialReplicationProgress: true, events.ReplicationError: true,
	events.HostReachable: true, events.HostUnreachable: true,
	events.AutomationExecuted: true,
}

// newAggState is the state of an aggregate of kind with no events.
func newAggState() aggState { return aggState{Run: planRun{group: -1}} }

// apply folds r into the state of its kind.
func (s *aggState) apply(r events.Record) {
	s.Seq = r.Seq
	if !routineTypes[r.Type()] {
		s.Marks = append(s.Marks, r)
	}
	switch r.Aggregate.Kind {
	case events.KindVM:
		s.View.apply(r)
	case events.KindHost:
		s.Host.apply(r)
	case events.KindCloud:
		s.Cloud.apply(r)
	case events.KindSite:
		s.Site.Apply(r)
	case events.KindPolicy:
		s.Policy.Apply(r)
	case events.KindPairing:
		s.Pairing.Apply(r)
	case events.KindNetmap:
		s.Netmap.Apply(r)
	case events.KindPlan:
		s.Run.plan.Apply(r)
		s.Run.apply(r)
	case events.KindAutomation:
		s.Automation.Apply(r)
		if d, ok := r.Data.(events.AutomationExecutedData); ok {
			s.Executed = append(s.Executed, d.EventSeq)
		}
	}
}

// executed reports whether the rule recorded its outcome for the event at
// seq.
func (s *aggState) executed(seq uint64) bool { return slices.Contains(s.Executed, seq) }

// foldAll folds recs, an aggregate's whole history, into a new state.
func foldAll(recs []events.Record) aggState {
	s := newAggState()
	for _, r := range recs {
		s.apply(r)
	}
	return s
}

// clone is a copy of s sharing no memory a fold or a caller may write:
// every slice and map the folds append to, delete from or assign into.
// Event data (records, disk specs, roots) is never written and is shared.
func (s aggState) clone() aggState {
	s.Marks = slices.Clip(s.Marks)
	s.Executed = slices.Clip(s.Executed)
	s.View = s.View.clone()
	s.Cloud.Hosts = slices.Clone(s.Cloud.Hosts)
	s.Run = s.Run.clone()
	s.Run.plan.Groups = slices.Clone(s.Run.plan.Groups)
	return s
}

func (v vmView) clone() vmView {
	v.Disks = slices.Clone(v.Disks)
	v.Networks = slices.Clone(v.Networks)
	v.RecoveryPoints = slices.Clone(v.RecoveryPoints)
	if v.Images != nil {
		imgs := make(map[string][]events.DiskImage, len(v.Images))
		for disk, is := range v.Images {
			imgs[disk] = slices.Clone(is)
		}
		v.Images = imgs
	}
	v.Divergences = maps.Clone(v.Divergences)
	return v
}

func (run planRun) clone() planRun {
	run.started = maps.Clone(run.started)
	run.done = maps.Clone(run.done)
	run.errs = slices.Clip(run.errs)
	run.susp = maps.Clone(run.susp)
	run.resumed = maps.Clone(run.resumed)
	return run
}

// foldCache keeps the folded state of the aggregates loaded last, so that
// a load reads and folds only the events appended since (events.LoadAfter)
// instead of the whole history. It holds at most size aggregates and drops
// the least recently used. Its states are never handed out: loads return
// clones. It is safe for concurrent use; the log stays the truth, the
// cache only saves reading it again.
type foldCache struct {
	log  events.Log
	size int

	mu      sync.Mutex
	lru     *list.List // of *cacheEntry, most recent first
	entries map[events.Aggregate]*list.Element
}

type cacheEntry struct {
	agg   events.Aggregate
	state aggState
}

func newFoldCache(log events.Log, size int) *foldCache {
	return &foldCache{log: log, size: max(size, 1), lru: list.New(), entries: map[events.Aggregate]*list.Element{}}
}

// load returns agg folded up to its last event in the log (as of the load):
// the cached state plus the events after it. An aggregate with no events
// has Seq 0.
func (c *foldCache) load(ctx context.Context, agg events.Aggregate) (aggState, error) {
	if err := agg.Validate(); err != nil {
		return aggState{}, err
	}
	s, ok := c.get(agg)
	if !ok {
		s = newAggState()
	}
	recs, err := events.LoadAfter(ctx, c.log, agg, s.Seq)
	if err != nil {
		return aggState{}, err
	}
	if len(recs) == 0 {
		return s, nil
	}
	for _, r := range recs {
		s.apply(r)
	}
	c.put(agg, s.clone())
	return s, nil
}

// get returns a clone of agg's cached state.
func (c *foldCache) get(agg events.Aggregate) (aggState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[agg]
	if !ok {
		return aggState{}, false
	}
	c.lru.MoveToFront(el)
	return el.Value.(*cacheEntry).state.clone(), true
}

// put keeps s, owned by the cache from now on, unless a state at least as
// recent is cached already (a concurrent load folded further).
func (c *foldCache) put(agg events.Aggregate, s aggState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[agg]; ok {
		e := el.Value.(*cacheEntry)
		if e.state.Seq < s.Seq {
			e.state = s
		}
		c.lru.MoveToFront(el)
		return
	}
	c.entries[agg] = c.lru.PushFront(&cacheEntry{agg: agg, state: s})
	for c.lru.Len() > c.size {
		old := c.lru.Back()
		c.lru.Remove(old)
		delete(c.entries, old.Value.(*cacheEntry).agg)
	}
}

// len is how many aggregates are cached.
func (c *foldCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}
