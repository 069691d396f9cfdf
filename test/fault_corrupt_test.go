package test

import (
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/hostsync"
)

// TestFaultCorruptReplicaBlock flips bytes in the replica image behind
// the agent's back and checks what the integrity data of DESIGN.md
// section 6 proves: a recovery point's hash tree root equals the tree of
// the source disk at that point; the replica's image, hashed again, no
// longer does, and the differing leaf is the corrupted block; and a later
// cycle touching that block reports a root that disagrees with the source,
// and a planned failover refuses to promote the replica at its verify step.
func TestFaultCorruptReplicaBlock(t *testing.T) {
	w := protectedWorld(t, worldOpts{diskSize: 8 << 20})
	require.NoError(t, w.disk.write(2<<20, 128<<10, 0x42))
	v := w.requireReplicaEqualsSource(20 * time.Second)
	id, _, _ := v.latestPoint()
	root := pointRoot(t, w.p, id)
	require.Equal(t, imageRoot(t, w.disk.image), root, "point %s's root is the source disk's tree at that point", id)
	require.Equal(t, root, imageRoot(t, w.replicaImage()), "the replica hashes to its point's root")

	const bad = 5<<20 + 4096 + 17 // a block no write touches before the check
	corrupt(t, w.replicaImage(), bad)
	src, rep := imageTree(t, w.disk.image), imageTree(t, w.replicaImage())
	require.NotEqual(t, root, rep.Root(), "a flipped byte changes the replica's root")
	diff, err := src.Diff(rep)
	require.NoError(t, err)
	require.Equal(t, []hostsync.BlockRange{{Offset: bad / hostsync.HashLeafSize * hostsync.HashLeafSize, Length: hostsync.HashLeafSize}}, diff,
		"comparing the trees finds exactly the corrupted block")

	// The next cycle rewrites part of that block at the source: the
	// recovery host rehashes the whole block from its image, so the point
	// it reports disagrees with the source's disk.
	require.NoError(t, w.disk.write(5<<20+32<<10, 4096, 0x43))
	v = w.p.waitVM(vmName, 20*time.Second, "a point after the write into the corrupted block", pointAfter(w.disk.lastAck()))
	id, _, _ = v.latestPoint()
	require.NotEqual(t, imageRoot(t, w.disk.image), pointRoot(t, w.p, id),
		"point %s's root exposes the corrupted replica block", id)

	// A planned failover verifies the replica against the source's final
	// roots before promoting it: the corrupted replica is refused.
	w.p.must("sr.cmd.vm.planned_failover", obj{"vm": vmName})
	v = w.p.waitVM(vmName, 30*time.Second, "planned failover refused at verify", func(v vmView) bool {
		return v.ProtectionState == "PlannedFailoverFailed"
	})
	require.NotNil(t, v.LastError)
	require.Equal(t, "verify_failed", v.LastError.Code, "%+v", v.LastError)
	t.Logf("corruption at byte %d: found by the hash trees; planned failover refused: %s", bad, v.LastError.Message)
}

// TestFaultCorruptUntouchedReplicaBlock corrupts a replica block that no
// later cycle rewrites. The recovery host's hash tree is only updated for
// the blocks a cycle writes, so its roots still match the source and the
// planned failover's verify passes: a corrupt disk is promoted. Runs with
// SR_FAULT_KNOWN_BUGS set, until verify (or a scrub) rehashes the image.
func TestFaultCorruptUntouchedReplicaBlock(t *testing.T) {
	if os.Getenv(envKnownBugs) == "" {
		t.Skip("known gap: verify trusts the replica's incrementally kept hash tree; set " + envKnownBugs + " to run")
	}
	w := protectedWorld(t, worldOpts{diskSize: 8 << 20})
	w.requireReplicaEqualsSource(20 * time.Second)
	corrupt(t, w.replicaImage(), 5<<20+17)
	w.p.must("sr.cmd.vm.planned_failover", obj{"vm": vmName})
	v := w.p.waitVM(vmName, 30*time.Second, "planned failover ended", func(v vmView) bool {
		return v.ProtectionState == "PlannedFailoverFailed" || v.ProtectionState == "FailoverCommitPending"
	})
	require.Equal(t, "PlannedFailoverFailed", v.ProtectionState, "a corrupted replica must not be promoted (last error %+v)", v.LastError)
}

// pointRoot is disk d0's hash tree root recorded with recovery point id.
func pointRoot(t testing.TB, p *plane, id string) string {
	t.Helper()
	for _, e := range readLog(t, p.nc).events {
		if e.Type != "recovery_point_created" {
			continue
		}
		var d struct {
			ID    string            `json:"id"`
			Roots map[string]string `json:"roots"`
		}
		require.NoError(t, json.Unmarshal(e.Data, &d))
		if d.ID == id {
			require.NotEmpty(t, d.Roots[diskName], "point %s has no root for %s", id, diskName)
			return d.Roots[diskName]
		}
	}
	t.Fatalf("no recovery_point_created for %s in the log", id)
	return ""
}

func imageTree(t testing.TB, path string) *hostsync.HashTree {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	st, err := f.Stat()
	require.NoError(t, err)
	tree, err := hostsync.BuildHashTree(f, st.Size())
	require.NoError(t, err)
	return tree
}

func imageRoot(t testing.TB, path string) string { return imageTree(t, path).Root() }

// corrupt flips the bits of 16 bytes at off, as a failing disk would.
func corrupt(t testing.TB, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	buf := make([]byte, 16)
	_, err = f.ReadAt(buf, off)
	require.NoError(t, err)
	for i := range buf {
		buf[i] ^= 0xff
	}
	_, err = f.WriteAt(buf, off)
	require.NoError(t, err)
	require.NoError(t, f.Sync())
}
