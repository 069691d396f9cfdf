package hostsync

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/siterecovery/siterecovery/events/agentproto"
	"github.com/siterecovery/siterecovery/hostsync/cycle"
	"github.com/siterecovery/siterecovery/hostsync/hashtree"
	"github.com/siterecovery/siterecovery/hostsync/replica"
)

// rootsMatch compares the replica's roots after applying cyc (p.Roots)
// with the source's roots at the cycle's close, when the cycle carries
// them. A difference means the replica is not the source's disk at that
// point (a block corrupted behind the agent's back, or lost): it is
// reported as resync_required, which the control plane turns into
// ResyncRequired and Critical health, and the point is not reported.
//
// Roots of another hash than the replica's (a source of another build:
// cyc.RootsHash names it, empty for SHA-256) vouch for nothing: they are
// neither a match nor a mismatch, the point is reported unchecked and a
// warning says so (rootsComparable).
func (rx *receiver) rootsMatch(ctx context.Context, cyc cycle.Cycle, p replica.Point) bool {
	if !rootsComparable(cyc) {
		rx.c.warnOnce("roots-hash", fmt.Errorf("%w: cycle %d: the source's roots are %s, this host's trees %s: the point is not checked against them",
			ErrOtherHash, cyc.Seq, hashOrSHA256(cyc.RootsHash), hashtree.HashName))
		return true
	}
	if err := compareRoots(p.ID, p.Roots, cyc.Roots); err != nil {
		rx.side.mismatched.add(p.ID)
		rx.c.reportError(ctx, agentproto.CodeResyncRequired, err)
		return false
	}
	return true
}

// compareRoots returns an error wrapping ErrIntegrityMismatch naming the
// first disk (in name order) whose replica root differs from the source's;
// nil when source is empty (nothing to compare) or all agree.
func compareRoots(point string, replica, source map[string]string) error {
	disks := make([]string, 0, len(source))
	for d := range source {
		disks = append(disks, d)
	}
	slices.Sort(disks)
	for _, d := range disks {
		if replica[d] != source[d] {
			return fmt.Errorf("%w: integrity check at %s: disk %s: replica root %s, source root %s",
				ErrIntegrityMismatch, point, d, orNone(replica[d]), source[d])
		}
	}
	return nil
}

// rootsComparable says whether the cycle's roots are of this build's hash:
// only those are compared with the replica's.
func rootsComparable(cyc cycle.Cycle) bool {
	return len(cyc.Roots) == 0 || hashtree.SameHash(cyc.RootsHash)
}

// hashOrSHA256 names a peer's hash: empty is an older build's SHA-256.
func hashOrSHA256(hash string) string {
	if hash == "" {
		return hashtree.HashSHA256
	}
	return hash
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// mismatchedPoints are the replica's points that failed the integrity
// check, so that no pass reports them as recovery points. In memory: the
// VM is in ResyncRequired by the time an agent restarts. Safe for
// concurrent use (the receiver adds, the controller reads).
type mismatchedPoints struct {
	mu  sync.Mutex
	ids map[string]bool
}

func (m *mismatchedPoints) add(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ids == nil {
		m.ids = map[string]bool{}
	}
	m.ids[id] = true
}

func (m *mismatchedPoints) has(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ids[id]
}
