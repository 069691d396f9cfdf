package sparse

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// The regions cover the range in order, hold every written byte in data, and
// a hole reads as zeros (a file system that cannot tell reports all data).
func TestRegionsCoverDataAndHoles(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "img"))
	require.NoError(t, err)
	defer f.Close()
	const size = 4 << 20
	require.NoError(t, f.Truncate(size))
	block := bytes.Repeat([]byte{7}, 64<<10)
	_, err = f.WriteAt(block, 2<<20)
	require.NoError(t, err)
	regions := Regions(f, 0, size)
	pos := int64(0)
	for _, r := range regions {
		require.Equal(t, pos, r.Offset)
		require.Positive(t, r.Length)
		if !r.Data {
			buf := make([]byte, r.Length)
			_, err := f.ReadAt(buf, r.Offset)
			require.NoError(t, err)
			require.True(t, IsZero(buf), "hole at %d reads as zeros", r.Offset)
		}
		pos += r.Length
	}
	require.Equal(t, int64(size), pos)
	require.Empty(t, Regions(f, size, size))
}

func TestIsZero(t *testing.T) {
	require.True(t, IsZero(nil))
	require.True(t, IsZero(make([]byte, 13)))
	for _, i := range []int{0, 7, 8, 12} {
		b := make([]byte, 13)
		b[i] = 1
		require.False(t, IsZero(b), "byte %d set", i)
	}
}

// Copy reproduces the bytes and leaves holes and zero blocks unwritten.
func TestCopyKeepsBytesAndHoles(t *testing.T) {
	dir := t.TempDir()
	src, err := os.Create(filepath.Join(dir, "src"))
	require.NoError(t, err)
	defer src.Close()
	const size = 8<<20 + 100
	require.NoError(t, src.Truncate(size))
	_, err = src.WriteAt(bytes.Repeat([]byte{9}, 3000), 5<<20)
	require.NoError(t, err)
	_, err = src.WriteAt(make([]byte, 2<<20), 1<<20) // written zeros
	require.NoError(t, err)
	dst, err := os.Create(filepath.Join(dir, "dst"))
	require.NoError(t, err)
	defer dst.Close()
	require.NoError(t, Copy(context.Background(), dst, src, size))

	want, err := os.ReadFile(src.Name())
	require.NoError(t, err)
	got, err := os.ReadFile(dst.Name())
	require.NoError(t, err)
	require.Equal(t, want, got)
	if dataBytes(src, size) < size { // the file system tells holes from data
		require.Less(t, dataBytes(dst, size), int64(2<<20), "only the non-zero block is allocated")
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, Copy(ctx, dst, src, size), context.Canceled)
}

func dataBytes(f *os.File, size int64) int64 {
	var n int64
	for _, r := range Regions(f, 0, size) {
		if r.Data {
			n += r.Length
		}
	}
	return n
}
