package replica

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

// The replica's files are laid out as their doc comments say, and a file
// of another format version (state file, pending record, undo file) is
// refused with ErrVersion, never read as version 1.
func TestReplicaFilesLayoutAndUnknownVersionsRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r, err := Open(dir, "web01", replicaTestDiskSpecs(), zerolog.Nop())
	require.NoError(t, err)
	h := newReplicaHistory(31)
	h.applyN(t, r, 3)
	points := r.Points()
	require.NoError(t, r.Close())

	statePath := filepath.Join(dir, stateFile)
	state, err := os.ReadFile(statePath)
	require.NoError(t, err)
	var head struct {
		Format int `json:"format"`
		Points []struct {
			Undo string `json:"undo"`
		} `json:"points"`
	}
	require.NoError(t, json.Unmarshal(state, &head))
	require.Equal(t, stateVersion, head.Format)
	undoPath := filepath.Join(dir, undoDir, head.Points[2].Undo)
	undo, err := os.ReadFile(undoPath)
	require.NoError(t, err)
	require.Equal(t, "SRUN\x01", string(undo[:5]))

	requireRefused := func(what string) {
		t.Helper()
		_, err := Open(dir, "web01", replicaTestDiskSpecs(), zerolog.Nop())
		require.ErrorIs(t, err, ErrVersion, what)
		require.ErrorIs(t, err, ErrState, what)
	}
	require.NoError(t, os.WriteFile(statePath, []byte(`{"format": 2, "vm": "web01", "points": "elsewhere"}`), 0o644))
	requireRefused("state file of format 2")
	require.NoError(t, os.WriteFile(statePath, state, 0o644))

	pendingPath := filepath.Join(dir, pendingFile)
	require.NoError(t, os.WriteFile(pendingPath, []byte(`{"kind": "merge", "target": "rp-1-2"}`), 0o644))
	requireRefused("pending record of an unknown kind")
	require.NoError(t, os.Remove(pendingPath))

	bad := append([]byte(nil), undo...)
	bad[4] = undoVersion + 1
	require.NoError(t, os.WriteFile(undoPath, bad, 0o644))
	r = mustOpenReplica(t, dir, Options{})
	_, err = r.MaterializePoint(context.Background(), points[1].ID, t.TempDir())
	require.ErrorIs(t, err, ErrVersion, "undo file of version 2")
	require.NoError(t, os.WriteFile(undoPath, undo, 0o644))
	requirePoint(t, r, points[1].ID, h.snaps[points[1].ID])
}
