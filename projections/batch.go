package projections

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/siterecovery/siterecovery/events"
)

// The buckets of the file. Values are JSON except in meta and jobIndex.
var (
	bucketMeta        = []byte("meta")
	bucketSites       = []byte("sites")
	bucketHosts       = []byte("hosts")
	bucketClouds      = []byte("clouds")
	bucketPolicies    = []byte("policies")
	bucketPairings    = []byte("pairings")
	bucketNetmaps     = []byte("netmaps")
	bucketVMs         = []byte("vms")
	bucketPlans       = []byte("plans")
	bucketAutomations = []byte("automations")
	bucketJobs        = []byte("jobs")
	// bucketJobIndex maps a job's first sequence (8 bytes, big endian) to
	// its id, so jobs list newest first.
	bucketJobIndex = []byte("job_index")
	// bucketOpenJobs lists each aggregate's jobs that have not ended.
	bucketOpenJobs = []byte("open_jobs")

	allBuckets = [][]byte{
		bucketMeta, bucketSites, bucketHosts, bucketClouds, bucketPolicies, bucketPairings,
		bucketNetmaps, bucketVMs, bucketPlans, bucketAutomations, bucketJobs, bucketJobIndex, bucketPoints, bucketOpenJobs,
	}
)

// Keys of the meta bucket: the checkpoint (last applied sequence) and how
// many events were applied in all (equal to the checkpoint when no event
// was skipped or applied twice).
var (
	keyCheckpoint = []byte("checkpoint")
	keyApplied    = []byte("applied")
)

func readMeta(tx *bolt.Tx, key []byte) uint64 {
	v := tx.Bucket(bucketMeta).Get(key)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

type docKey struct{ bucket, key string }

// runnerCache is what the runner keeps in memory across batches, as
// committed (or as the batch being applied changes it: the runner drops it
// all when a batch fails). Only the runner goroutine touches it.
type runnerCache struct {
	points map[string]*pointList
	docs   map[docKey]any
}

func newRunnerCache() *runnerCache {
	return &runnerCache{points: map[string]*pointList{}, docs: map[docKey]any{}}
}

// batch applies events inside one write transaction. It keeps every read
// model it touches decoded in memory and writes each once, at flush: a VM
// with a hundred events in the batch is decoded and encoded once.
type batch struct {
	tx   *bolt.Tx
	docs map[docKey]any
	// points and cache are the runner's, kept across batches: every VM's
	// point list and the decoded VM read models (the hot ones), as
	// committed, or as this batch changes them.
	points map[string]*pointList
	cache  map[docKey]any
	// before is the tally (counts.go) of each counted read model as the
	// batch first loaded it, for flush to change the counts by.
	before     map[docKey][]string
	checkpoint uint64
	applied    uint64
}

func newBatch(tx *bolt.Tx, r *runnerCache) *batch {
	return &batch{
		tx: tx, docs: map[docKey]any{}, points: r.points, cache: r.docs, before: map[docKey][]string{},
		checkpoint: readMeta(tx, keyCheckpoint), applied: readMeta(tx, keyApplied),
	}
}

// load returns the read model under key in bucket, decoded (a zero T when
// there is none), for update: flush writes it back.
func load[T any](b *batch, bucket []byte, key string) (*T, error) {
	k := docKey{string(bucket), key}
	if v, ok := b.docs[k]; ok {
		return v.(*T), nil
	}
	if v, ok := b.cache[k]; ok {
		b.loaded(k, v, true)
		return v.(*T), nil
	}
	v := new(T)
	raw := b.tx.Bucket(bucket).Get([]byte(key))
	if raw != nil {
		if err := json.Unmarshal(raw, v); err != nil {
			return nil, fmt.Errorf("%s/%s: %v: %w", bucket, key, err, ErrCorrupt)
		}
	}
	b.loaded(k, v, raw != nil)
	if bytes.Equal(bucket, bucketVMs) {
		b.cache[k] = v
	}
	return v, nil
}

// loaded takes v, the read model under k as committed, into the batch and
// notes its tally if it is counted (stored: it is in the file).
func (b *batch) loaded(k docKey, v any, stored bool) {
	b.docs[k] = v
	if counted(k.bucket) {
		b.before[k] = tallyOf(k.bucket, v, stored)
	}
}

// has reports whether bucket holds key, in this batch or before.
func (b *batch) has(bucket []byte, key string) bool {
	if _, ok := b.docs[docKey{string(bucket), key}]; ok {
		return true
	}
	return b.tx.Bucket(bucket).Get([]byte(key)) != nil
}

// folder is an aggregate state that folds events (events.Site, events.VM...).
type folder[T any] interface {
	*T
	Apply(events.Record)
}

// fold applies r to the read model of r's aggregate in bucket.
func fold[T any, P folder[T]](b *batch, bucket []byte, r events.Record) error {
	v, err := load[T](b, bucket, r.Aggregate.ID)
	if err != nil {
		return err
	}
	P(v).Apply(r)
	return nil
}

// apply applies one event to every read model it concerns.
func (b *batch) apply(r events.Record) error {
	if err := b.applyAggregate(r); err != nil {
		return err
	}
	return b.applyJob(r)
}

func (b *batch) applyAggregate(r events.Record) error {
	switch r.Aggregate.Kind {
	case events.KindSite:
		return fold[events.Site](b, bucketSites, r)
	case events.KindHost:
		return fold[events.Host](b, bucketHosts, r)
	case events.KindCloud:
		return fold[events.Cloud](b, bucketClouds, r)
	case events.KindPolicy:
		return fold[events.Policy](b, bucketPolicies, r)
	case events.KindPairing:
		return fold[events.Pairing](b, bucketPairings, r)
	case events.KindNetmap:
		return fold[events.Netmap](b, bucketNetmaps, r)
	case events.KindVM:
		return b.applyVM(r)
	case events.KindPlan:
		return fold[events.Plan](b, bucketPlans, r)
	case events.KindAutomation:
		return fold[events.Automation](b, bucketAutomations, r)
	}
	return nil // the vault has no read model
}

// flush writes every read model touched, the counts of the status query
// they change, the checkpoint and the counter.
func (b *batch) flush() error {
	keys := make([]docKey, 0, len(b.docs))
	for k := range b.docs {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y docKey) int {
		if x.bucket != y.bucket {
			return cmp.Compare(x.bucket, y.bucket)
		}
		return cmp.Compare(x.key, y.key)
	})
	for _, k := range keys {
		raw, err := json.Marshal(b.docs[k])
		if err != nil {
			return fmt.Errorf("encode %s/%s: %w", k.bucket, k.key, err)
		}
		if err := b.tx.Bucket([]byte(k.bucket)).Put([]byte(k.key), raw); err != nil {
			return fmt.Errorf("write %s/%s: %w", k.bucket, k.key, err)
		}
	}
	if err := writeCounts(b.tx, b.countDeltas()); err != nil {
		return err
	}
	meta := b.tx.Bucket(bucketMeta)
	if err := meta.Put(keyCheckpoint, u64(b.checkpoint)); err != nil {
		return fmt.Errorf("write checkpoint: %w", err)
	}
	if err := meta.Put(keyApplied, u64(b.applied)); err != nil {
		return fmt.Errorf("write counter: %w", err)
	}
	return nil
}
