package batch

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/hostsync/cycle"
)

func rootsCycle() cycle.Cycle {
	data := bytes.Repeat([]byte{7}, 300<<10)
	return cycle.Cycle{
		VM: "web01", Epoch: 2, Seq: 9, ClosedAt: time.Unix(1700000000, 5).UTC(),
		Extents: []cycle.Extent{{Disk: "d0", Offset: 0, Length: int64(len(data)), Data: data}, {Disk: "d1", Offset: 1 << 20, Length: 4096, Zero: true}},
		Roots:   map[string]string{"d0": strings.Repeat("ab", 32), "d1": strings.Repeat("0f", 32)},
	}
}

// Roots ride on the last batch only, as version 2; the others stay
// version 1, and the assembler hands the roots on with the cycle.
func TestBatchRootsOnLastBatch(t *testing.T) {
	c := rootsCycle()
	for _, comp := range []string{CompressionNone, CompressionS2, CompressionZstd} {
		msgs, err := EncodeCycle(c, Options{MaxPayload: 128 << 10, Compression: comp})
		require.NoError(t, err)
		require.Greater(t, len(msgs), 2)
		asm := NewAssembler("web01", 2, 9)
		var got cycle.Cycle
		for i, m := range msgs {
			require.LessOrEqual(t, len(m), 128<<10)
			last := i == len(msgs)-1
			want := byte(VersionBase)
			if last {
				want = VersionRoots
			}
			require.Equal(t, want, m[4], "batch %d version", i)
			b, err := Decode(m)
			require.NoError(t, err)
			require.Equal(t, last, b.Roots != nil)
			cyc, whole, err := asm.Add(b)
			require.NoError(t, err)
			if whole {
				got = cyc
			}
		}
		require.Equal(t, c.Roots, got.Roots, comp)
		require.Equal(t, c.Extents[1], got.Extents[len(got.Extents)-1])
	}
}

// A cycle without roots encodes exactly as format version 1 did.
func TestBatchWithoutRootsIsVersion1(t *testing.T) {
	c := rootsCycle()
	c.Roots = nil
	msgs, err := EncodeCycle(c, Options{MaxPayload: 1 << 20})
	require.NoError(t, err)
	for _, m := range msgs {
		require.Equal(t, byte(VersionBase), m[4])
		b, err := Decode(m)
		require.NoError(t, err)
		require.Nil(t, b.Roots)
	}
}

func TestBatchRootsRefused(t *testing.T) {
	for name, roots := range map[string]map[string]string{
		"not hex":    {"d0": strings.Repeat("zz", 32)},
		"short":      {"d0": "abcd"},
		"empty disk": {"": strings.Repeat("ab", 32)},
	} {
		c := rootsCycle()
		c.Roots = roots
		_, err := EncodeCycle(c, Options{MaxPayload: 1 << 20})
		require.ErrorIs(t, err, ErrOptions, name)
		_, err = Encode(Batch{VM: "web01", Last: true, Roots: roots})
		require.ErrorIs(t, err, ErrOptions, name)
	}
}

// Every byte of a version 2 batch is covered: a flipped byte or a cut
// anywhere is refused with a typed error, never a panic.
func TestBatchRootsCorruptRefused(t *testing.T) {
	msg, err := Encode(Batch{VM: "web01", Epoch: 1, Cycle: 1, Last: true, Roots: rootsCycle().Roots,
		Extents: []cycle.Extent{{Disk: "d0", Offset: 0, Length: 3, Data: []byte("abc")}}})
	require.NoError(t, err)
	for i := range msg {
		bad := bytes.Clone(msg)
		bad[i] ^= 0x5a
		_, err := Decode(bad)
		require.True(t, errors.Is(err, ErrCorrupt) || errors.Is(err, ErrVersion), "byte %d: %v", i, err)
		_, err = Decode(msg[:i])
		require.Error(t, err)
	}
}

func FuzzDecodeBatchRoots(f *testing.F) {
	msg, _ := Encode(Batch{VM: "v", Last: true, Roots: map[string]string{"d": strings.Repeat("01", 32)}})
	f.Add(msg)
	msg, _ = Encode(Batch{VM: "v", Last: true, Roots: map[string]string{"d": strings.Repeat("01", 32)}, RootsHash: "blake3"})
	f.Add(msg)
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := Decode(data)
		if err != nil {
			return
		}
		again, err := Encode(b)
		require.NoError(t, err)
		back, err := Decode(again)
		require.NoError(t, err)
		require.Equal(t, b.Roots, back.Roots)
		require.Equal(t, b.RootsHash, back.RootsHash)
	})
}

// Roots of a named hash ride as version 3 with the name before them and
// come back with it through the assembler; roots without a name (SHA-256,
// the builds before) stay version 2 and decode with no name, so the
// receiver never takes them for roots of its own hash.
func TestBatchRootsHashIsVersion3(t *testing.T) {
	c := rootsCycle()
	c.RootsHash = "blake3"
	msgs, err := EncodeCycle(c, Options{MaxPayload: 128 << 10, Compression: CompressionS2})
	require.NoError(t, err)
	asm := NewAssembler("web01", 2, 9)
	var got cycle.Cycle
	for i, m := range msgs {
		last := i == len(msgs)-1
		want := byte(VersionBase)
		if last {
			want = VersionRootsHash
		}
		require.Equal(t, want, m[4], "batch %d version", i)
		b, err := Decode(m)
		require.NoError(t, err)
		if last {
			require.Equal(t, "blake3", b.RootsHash)
		}
		cyc, whole, err := asm.Add(b)
		require.NoError(t, err)
		if whole {
			got = cyc
		}
	}
	require.Equal(t, c.Roots, got.Roots)
	require.Equal(t, "blake3", got.RootsHash)

	old := rootsCycle() // a source before the hash was named
	msgs, err = EncodeCycle(old, Options{MaxPayload: 1 << 20})
	require.NoError(t, err)
	last := msgs[len(msgs)-1]
	require.Equal(t, byte(VersionRoots), last[4])
	b, err := Decode(last)
	require.NoError(t, err)
	require.Equal(t, old.Roots, b.Roots)
	require.Empty(t, b.RootsHash, "a version 2 batch's roots are SHA-256: no name")

	msg, err := Encode(Batch{VM: "web01", Last: true, Roots: c.Roots, RootsHash: "blake3"})
	require.NoError(t, err)
	for i := range msg {
		bad := bytes.Clone(msg)
		bad[i] ^= 0x5a
		_, err := Decode(bad)
		require.True(t, errors.Is(err, ErrCorrupt) || errors.Is(err, ErrVersion), "byte %d: %v", i, err)
		_, err = Decode(msg[:i])
		require.Error(t, err)
	}
	_, err = Encode(Batch{VM: "web01", Last: true, Roots: c.Roots, RootsHash: strings.Repeat("x", 33)})
	require.ErrorIs(t, err, ErrOptions)
}
