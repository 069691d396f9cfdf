package test

import (
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/hostsync/cycle"
	"github.com/siterecovery/siterecovery/hostsync/hashtree"
)

// TestFaultCorruptReplicaBlock flips bytes in the replica image behind
// the agent's back and checks what the integrity data (hash trees,
// docs/reference/files.md) proves: a recovery point's hash tree root equals the tree of
// the source disk at that point; the replica's image, hashed again, no
// longer does, and the differing leaf is the corrupted block; a later cycle
// touching that block makes the recovery host's root disagree with the
// source's root carried by the cycle, which raises ResyncRequired and
// Critical (no point records the corrupted replica); `vm resync` repairs it
// and `vm verify` finds both sides equal.
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
	require.Equal(t, []cycle.Range{{Offset: bad / hashtree.LeafSize * hashtree.LeafSize, Length: hashtree.LeafSize}}, diff,
		"comparing the trees finds exactly the corrupted block")

	// The next cycle rewrites part of that block at the source: the
	// recovery host rehashes the whole block from its image, so its root
	// disagrees with the source's root sent with the cycle.
	require.NoError(t, w.disk.write(5<<20+32<<10, 4096, 0x43))
	v = w.p.waitVM(vmName, 20*time.Second, "resync required by the per-cycle integrity check", func(v vmView) bool {
		return v.ProtectionState == "ResyncRequired" && v.Health == "Critical"
	})
	t.Logf("corruption at byte %d: found by the per-cycle check: %v", bad, v.Issues)

	// vm resync re-hashes the replica's images and ships the differing
	// blocks: the replica equals the source again, and verify agrees.
	w.p.must("sr.cmd.vm.resync", obj{"vm": vmName})
	w.p.waitVM(vmName, 40*time.Second, "protected again", func(v vmView) bool { return v.ProtectionState == "Protected" })
	w.requireReplicaEqualsSource(30 * time.Second)
	var res struct {
		Equal bool `json:"equal"`
	}
	require.NoError(t, json.Unmarshal(w.p.must("sr.cmd.vm.verify", obj{"vm": vmName}), &res))
	require.True(t, res.Equal, "vm verify after the resync")
}

// TestFaultCorruptUntouchedReplicaBlock corrupts a replica block that no
// later cycle rewrites. The recovery host's hash tree is only updated for
// the blocks a cycle writes, so its kept roots still match the source: the
// planned failover's verify re-hashes the replica's images (a scrub) and
// refuses to promote the corrupt disk.
func TestFaultCorruptUntouchedReplicaBlock(t *testing.T) {
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

func imageTree(t testing.TB, path string) *hashtree.Tree {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	st, err := f.Stat()
	require.NoError(t, err)
	tree, err := hashtree.Build(f, st.Size())
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
