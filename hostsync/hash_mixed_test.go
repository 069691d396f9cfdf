package hostsync

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/hostsync/cycle"
	"github.com/siterecovery/siterecovery/hostsync/hashtree"
	"github.com/siterecovery/siterecovery/hostsync/replica"
)

// Roots of another hash (a source of a build before BLAKE3 names none) are
// not compared with the replica's: they differ from them everywhere and
// are no sign of corruption. Roots of this build's hash are compared, and
// a difference is the integrity mismatch that raises ResyncRequired.
func TestRootsOfAnotherHashAreNotCorruption(t *testing.T) {
	sha := map[string]string{"d0": strings.Repeat("ab", 32)}
	replicaRoots := map[string]string{"d0": strings.Repeat("cd", 32)}
	for _, hash := range []string{"", hashtree.HashSHA256, "some-future-hash"} {
		cyc := cycle.Cycle{Seq: 4, Roots: sha, RootsHash: hash}
		require.False(t, rootsComparable(cyc), "roots of %q", hash)
	}
	require.True(t, rootsComparable(cycle.Cycle{Seq: 4}), "no roots: nothing to compare")
	ours := cycle.Cycle{Seq: 4, Roots: sha, RootsHash: hashtree.HashName}
	require.True(t, rootsComparable(ours))
	require.ErrorIs(t, compareRoots("rp-1-4", replicaRoots, ours.Roots), ErrIntegrityMismatch)
	require.NoError(t, compareRoots("rp-1-4", sha, ours.Roots))
}

// A recovery host answers tree leaves only in its own hash: a request
// naming none (a build before BLAKE3) or another is refused with an error
// naming both, and a reply of another hash is refused by the asker rather
// than compared; sub-block hashes (SHA-256 in every build) pass.
func TestLeavesAnsweredOnlyInTheAskedHash(t *testing.T) {
	rep, err := replica.Open(filepath.Join(t.TempDir(), "replica"), "vm", []events.DiskSpec{{Name: "d0", Size: 4 * hashtree.LeafSize}}, zerolog.Nop())
	require.NoError(t, err)
	defer rep.Close()
	ask := func(req leavesRequest) leavesReply {
		data, err := json.Marshal(req)
		require.NoError(t, err)
		var out leavesReply
		answerLeaves(rep, data, func(reply []byte) error { return json.Unmarshal(reply, &out) })
		return out
	}

	old := ask(leavesRequest{Disk: "d0", First: 0, N: 4, Rehash: true}) // no hash: SHA-256
	require.Contains(t, old.Error, ErrOtherHash.Error())
	require.Contains(t, old.Error, "leaves asked in sha256, this host's trees are blake3")
	require.Empty(t, old.Leaves)

	req := newLeavesRequest("d0", 0, 4, true)
	got := ask(req)
	require.Empty(t, got.Error)
	require.Equal(t, hashtree.HashName, got.Hash)
	require.Len(t, got.Leaves, 4*hashtree.HashSize)
	require.NoError(t, checkLeavesHash(req, got, ErrPeerUnavailable))

	got.Hash = "" // as a host before BLAKE3 answers
	err = checkLeavesHash(req, got, ErrPeerUnavailable)
	require.ErrorIs(t, err, ErrOtherHash)
	require.ErrorIs(t, err, ErrPeerUnavailable)
	require.False(t, errors.Is(err, ErrIntegrityMismatch))
	require.ErrorIs(t, checkLeavesHash(req, got, ErrNotVerifiable), ErrNotVerifiable)

	sub := leavesRequest{Disk: "d0", Sub: []int{1}}
	subs := ask(sub)
	require.Empty(t, subs.Error)
	require.Empty(t, subs.Hash)
	require.NoError(t, checkLeavesHash(sub, subs, ErrPeerUnavailable))
}

// The receiver's check after an apply: a cycle whose roots are of another
// hash is let through, unchecked, with no mismatch recorded and no
// resync_required reported (the vmCtl here has no agent to report with: a
// report would panic); roots of its own hash are compared, equal ones
// pass (a difference raising ResyncRequired with the real embedded server:
// TestCycleRootsCatchCorruptionAndResyncRepairs, integrity_e2e_test.go).
func TestReceiverLetsRootsOfAnotherHashThrough(t *testing.T) {
	c := &vmCtl{name: "vm", logger: zerolog.Nop(), reports: map[string]time.Time{}}
	rx := &receiver{c: c, side: &recoverySide{}}
	p := replica.Point{ID: "rp-1-4", Roots: map[string]string{"d0": strings.Repeat("cd", 32)}, RootsHash: hashtree.HashName}
	old := cycle.Cycle{Seq: 4, Roots: map[string]string{"d0": strings.Repeat("ab", 32)}} // SHA-256, unnamed
	require.True(t, rx.rootsMatch(context.Background(), old, p))
	require.False(t, rx.side.mismatched.has(p.ID))

	same := old
	same.Roots, same.RootsHash = p.Roots, hashtree.HashName
	require.True(t, rx.rootsMatch(context.Background(), same, p))
	require.False(t, rx.side.mismatched.has(p.ID))
}
