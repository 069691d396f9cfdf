package projections

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/siterecovery/siterecovery/events"
)

// bucketCounts keeps the counts of the status query that would otherwise
// take a scan of every VM and every job: key -> count (8 bytes, big
// endian), a key only while its count is above zero. The batch that
// changes VMs and jobs changes the counts in the same transaction, so
// they are always those of the checkpoint.
var bucketCounts = []byte("counts")

// Keys of bucketCounts: the VMs that exist, and by protection state and
// health; the jobs by state.
const (
	countVMs      = "vms"
	countVMState  = "vm_state/"
	countVMHealth = "vm_health/"
	countJobState = "job_state/"
)

// maxCount bounds a stored count: a larger value is corrupt.
const maxCount = 1 << 62

// vmTally is the keys a VM read model adds one to: none unless it exists.
func vmTally(m *vmModel) []string {
	if !m.VM.Exists() {
		return nil
	}
	health := m.VM.Health
	if health == "" {
		health = events.HealthNormal
	}
	return []string{countVMs, countVMState + string(m.VM.State), countVMHealth + health}
}

// jobTally is the key a stored job adds one to.
func jobTally(j *Job) []string { return []string{countJobState + j.State} }

// tallyOf is the keys the read model v of bucket adds one to; stored says
// whether v is in the file (a new job is not yet).
func tallyOf(bucket string, v any, stored bool) []string {
	switch m := v.(type) {
	case *vmModel:
		return vmTally(m)
	case *Job:
		if stored {
			return jobTally(m)
		}
	}
	return nil
}

// counted reports whether the read models of bucket are counted.
func counted(bucket string) bool {
	return bucket == string(bucketVMs) || bucket == string(bucketJobs)
}

// countDeltas is what the batch changes in the counts: the tally of every
// counted read model as flush writes it, less its tally when the batch
// first loaded it.
func (b *batch) countDeltas() map[string]int64 {
	d := map[string]int64{}
	for k, before := range b.before {
		for _, key := range before {
			d[key]--
		}
		for _, key := range tallyOf(k.bucket, b.docs[k], true) {
			d[key]++
		}
	}
	return d
}

// writeCounts adds the deltas to the stored counts.
func writeCounts(tx *bolt.Tx, deltas map[string]int64) error {
	bk := tx.Bucket(bucketCounts)
	for _, key := range slices.Sorted(maps.Keys(deltas)) {
		if deltas[key] == 0 {
			continue
		}
		n, err := readCount(bk.Get([]byte(key)), key)
		if err != nil {
			return err
		}
		n += deltas[key]
		switch {
		case n < 0:
			return fmt.Errorf("counts/%s would be %d: %w", key, n, ErrCorrupt)
		case n == 0:
			err = bk.Delete([]byte(key))
		default:
			err = bk.Put([]byte(key), u64(uint64(n)))
		}
		if err != nil {
			return fmt.Errorf("write counts/%s: %w", key, err)
		}
	}
	return nil
}

func readCount(raw []byte, key string) (int64, error) {
	if raw == nil {
		return 0, nil
	}
	if len(raw) != 8 || binary.BigEndian.Uint64(raw) > maxCount {
		return 0, fmt.Errorf("counts/%s: %x is not a count: %w", key, raw, ErrCorrupt)
	}
	return int64(binary.BigEndian.Uint64(raw)), nil
}

// readCounts returns every stored count.
func readCounts(tx *bolt.Tx) (map[string]int64, error) {
	out := map[string]int64{}
	err := tx.Bucket(bucketCounts).ForEach(func(k, v []byte) error {
		n, err := readCount(v, string(k))
		out[string(k)] = n
		return err
	})
	return out, err
}

// recount counts every VM and job of the file, as the stored counts
// should be: it fills the counts of a file written before they were kept
// (and tests compare it with them).
func recount(tx *bolt.Tx) (map[string]int64, error) {
	out := map[string]int64{}
	err := tx.Bucket(bucketVMs).ForEach(func(k, raw []byte) error {
		var m vmModel
		if err := json.Unmarshal(raw, &m); err != nil {
			return fmt.Errorf("vms/%s: %v: %w", k, err, ErrCorrupt)
		}
		for _, key := range vmTally(&m) {
			out[key]++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = tx.Bucket(bucketJobs).ForEach(func(k, raw []byte) error {
		var j Job
		if err := json.Unmarshal(raw, &j); err != nil {
			return fmt.Errorf("jobs/%s: %v: %w", k, err, ErrCorrupt)
		}
		out[countJobState+j.State]++
		return nil
	})
	return out, err
}

// initCounts creates the counts of a file that has none (new, or written
// before they were kept) from its read models.
func initCounts(tx *bolt.Tx) error {
	if tx.Bucket(bucketCounts) != nil {
		return nil
	}
	if _, err := tx.CreateBucket(bucketCounts); err != nil {
		return fmt.Errorf("create bucket %s: %w", bucketCounts, err)
	}
	counts, err := recount(tx)
	if err != nil {
		return fmt.Errorf("count the read models: %w", err)
	}
	return writeCounts(tx, counts)
}

// fill sets the VM and job counts of st from the stored counts.
func (st *Status) fill(counts map[string]int64) {
	for key, n := range counts {
		switch {
		case key == countVMs:
			st.VMs.Total = int(n)
		case strings.HasPrefix(key, countVMState):
			st.VMs.ByProtectionState[key[len(countVMState):]] = int(n)
		case strings.HasPrefix(key, countVMHealth):
			st.VMs.ByHealth[key[len(countVMHealth):]] = int(n)
		case strings.HasPrefix(key, countJobState):
			st.Jobs[key[len(countJobState):]] = int(n)
		}
	}
}
