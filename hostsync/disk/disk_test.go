package disk

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/hostsync/cycle"
)

const testBoot = "boot-a"

// mustOpenDisk opens (or creates) a tracked disk in dir and closes it when
// the test ends.
func mustOpenDisk(tb testing.TB, path string, size int64, opts Options) *Tracked {
	tb.Helper()
	if opts.BootID == "" {
		opts.BootID = testBoot
	}
	d, err := Open(path, size, opts)
	require.NoError(tb, err)
	tb.Cleanup(func() { require.NoError(tb, d.Close()) })
	return d
}

// crashDisk drops the disk as a kill -9 would: no clean-shutdown marker, no
// sync, files closed.
func crashDisk(tb testing.TB, d *Tracked) {
	tb.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.filesMu.Lock()
	defer d.filesMu.Unlock()
	if d.isClosed.Swap(true) {
		return
	}
	require.NoError(tb, errors.Join(d.img.Close(), d.log.Close()))
}

// applyCycle applies a cycle's extents to buf, as a replica would.
func applyCycle(buf []byte, c cycle.Cycle) {
	for _, e := range c.Extents {
		if e.Zero {
			clear(buf[e.Offset:e.End()])
		} else {
			copy(buf[e.Offset:], e.Data)
		}
	}
}

func readImage(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	require.NoError(tb, err)
	return b
}

func TestTrackedDiskCreateWriteRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "disk0.img")
	d := mustOpenDisk(t, path, 1<<20, Options{})
	require.Equal(t, int64(1<<20), d.Size())
	require.Equal(t, "disk0", d.Name())
	require.NoError(t, d.WriteAt(bytes.Repeat([]byte{7}, 5000), 100, true))
	got := make([]byte, 5000)
	_, err := d.ReadAt(got, 100)
	require.NoError(t, err)
	require.Equal(t, bytes.Repeat([]byte{7}, 5000), got)

	require.ErrorIs(t, d.WriteAt([]byte{1}, 1<<20, false), ErrOutOfRange)
	_, err = d.ReadAt(make([]byte, 2), 1<<20-1)
	require.ErrorIs(t, err, ErrOutOfRange)
	require.ErrorIs(t, d.Trim(-1, 1, false), ErrOutOfRange)
	require.NoError(t, d.Close())
	require.NoError(t, d.Close(), "Close is safe twice")
	require.ErrorIs(t, d.WriteAt([]byte{1}, 0, false), ErrClosed)

	_, err = Open(path, 2<<20, Options{BootID: testBoot})
	require.Error(t, err, "a size that differs from the image is refused")
	d2 := mustOpenDisk(t, path, 0, Options{})
	require.Equal(t, int64(1<<20), d2.Size())
	ok, why := d2.NeedsResync()
	require.False(t, ok, why)
	_, err = d2.ReadAt(got, 100)
	require.NoError(t, err)
	require.Equal(t, bytes.Repeat([]byte{7}, 5000), got)
}

func TestTrackedDiskCycleCoalesces(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.img")
	d := mustOpenDisk(t, path, 1<<20, Options{})
	fill := func(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }
	require.NoError(t, d.WriteAt(fill(1, 100), 0, false))
	require.NoError(t, d.WriteAt(fill(2, 50), 50, false)) // overwrites the tail of the first
	require.NoError(t, d.WriteAt(fill(3, 10), 150, false))
	require.NoError(t, d.WriteAt(fill(6, 10), 160, false)) // adjacent: merges
	require.NoError(t, d.WriteAt(fill(7, 10), 170, false))
	require.NoError(t, d.WriteZeroes(1000, 500, false))     // zero extent
	require.NoError(t, d.Trim(1500, 100, false))            // adjacent zero: merges
	require.NoError(t, d.WriteAt(fill(4, 10), 1200, false)) // data inside the zero range
	require.NoError(t, d.WriteAt(fill(5, 10), 4000, false))
	require.NoError(t, d.WriteZeroes(4000, 10, false)) // last write wins: zero

	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	seq, err := d.CloseCycle(at, true)
	require.NoError(t, err)
	require.Equal(t, uint64(1), seq)
	require.NoError(t, d.WriteAt(fill(9, 4000), 0, false)) // after the close: not in cycle 1

	c, err := d.Cycle(1)
	require.NoError(t, err)
	require.Equal(t, uint64(1), c.Seq)
	require.True(t, c.AppConsistent)
	require.True(t, c.ClosedAt.Equal(at))
	want := []cycle.Extent{
		{Disk: "d", Offset: 0, Length: 100, Data: append(fill(1, 50), fill(2, 50)...)},
		{Disk: "d", Offset: 150, Length: 30, Data: append(append(fill(3, 10), fill(6, 10)...), fill(7, 10)...)},
		{Disk: "d", Offset: 1000, Length: 200, Zero: true},
		{Disk: "d", Offset: 1200, Length: 10, Data: fill(4, 10)},
		{Disk: "d", Offset: 1210, Length: 390, Zero: true},
		{Disk: "d", Offset: 4000, Length: 10, Zero: true},
	}
	require.Equal(t, want, c.Extents)

	for want := uint64(2); want <= 4; want++ { // empty cycles are fine
		seq, err := d.CloseCycle(time.Now(), false)
		require.NoError(t, err)
		require.Equal(t, want, seq)
	}
	require.Equal(t, []uint64{1, 2, 3, 4}, d.Pending())
	c3, err := d.Cycle(3)
	require.NoError(t, err)
	require.Empty(t, c3.Extents)
	_, err = d.Cycle(5)
	require.ErrorIs(t, err, ErrCycleNotFound)
}

func TestTrackedDiskAckCompactsAndSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.img")
	d := mustOpenDisk(t, path, 4<<20, Options{})
	for i := range 3 {
		require.NoError(t, d.WriteAt(bytes.Repeat([]byte{byte(i + 1)}, 256<<10), int64(i)<<20, false))
		_, err := d.CloseCycle(time.Now(), false)
		require.NoError(t, err)
	}
	require.NoError(t, d.WriteAt([]byte("open cycle"), 10, false))
	before, err := os.Stat(path + ".hrl")
	require.NoError(t, err)

	require.NoError(t, d.Ack(2))
	require.NoError(t, d.Ack(1), "acking a dropped cycle again is a no-op")
	require.ErrorIs(t, d.Ack(4), ErrCycleNotFound)
	require.Equal(t, []uint64{3}, d.Pending())
	after, err := os.Stat(path + ".hrl")
	require.NoError(t, err)
	require.Less(t, after.Size(), before.Size()-400<<10)
	_, err = d.Cycle(2)
	require.ErrorIs(t, err, ErrCycleNotFound)

	c3, err := d.Cycle(3)
	require.NoError(t, err)
	require.Equal(t, []cycle.Extent{{Disk: "d", Offset: 2 << 20, Length: 256 << 10, Data: bytes.Repeat([]byte{3}, 256<<10)}}, c3.Extents)

	require.NoError(t, d.Close())
	d2 := mustOpenDisk(t, path, 4<<20, Options{})
	require.Equal(t, []uint64{3}, d2.Pending())
	seq, err := d2.CloseCycle(time.Now(), false)
	require.NoError(t, err)
	require.Equal(t, uint64(4), seq)
	c4, err := d2.Cycle(4)
	require.NoError(t, err)
	require.Equal(t, []cycle.Extent{{Disk: "d", Offset: 10, Length: 10, Data: []byte("open cycle")}}, c4.Extents)
	c3again, err := d2.Cycle(3)
	require.NoError(t, err)
	require.Equal(t, c3.Extents, c3again.Extents)
}

func TestTrackedDiskCrashRecoversAcknowledgedWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.img")
	d := mustOpenDisk(t, path, 1<<20, Options{})
	require.NoError(t, d.WriteAt(bytes.Repeat([]byte{1}, 4096), 0, false))
	_, err := d.CloseCycle(time.Now(), false)
	require.NoError(t, err)
	require.NoError(t, d.WriteAt(bytes.Repeat([]byte{2}, 4096), 8192, true))
	crashDisk(t, d)

	// The process died after logging a write but before the image saw it,
	// and while writing the next record (a torn tail).
	appendRawRecord(t, path+".hrl", hrlWrite, 100, bytes.Repeat([]byte{3}, 100))
	torn := encodeTestRecord(hrlWrite, 5000, bytes.Repeat([]byte{4}, 300))
	appendBytes(t, path+".hrl", torn[:len(torn)-17])

	d2 := mustOpenDisk(t, path, 1<<20, Options{})
	ok, why := d2.NeedsResync()
	require.False(t, ok, why)
	img := readImage(t, path)
	require.Equal(t, bytes.Repeat([]byte{3}, 100), img[100:200], "logged write redone onto the image")
	require.Equal(t, bytes.Repeat([]byte{2}, 4096), img[8192:12288])
	require.Equal(t, make([]byte, 300), img[5000:5300], "torn record never applied")
	require.Equal(t, []uint64{1}, d2.Pending())
	seq, err := d2.CloseCycle(time.Now(), false)
	require.NoError(t, err)
	c, err := d2.Cycle(seq)
	require.NoError(t, err)
	require.Equal(t, []cycle.Extent{
		{Disk: "d", Offset: 100, Length: 100, Data: bytes.Repeat([]byte{3}, 100)},
		{Disk: "d", Offset: 8192, Length: 4096, Data: bytes.Repeat([]byte{2}, 4096)},
	}, c.Extents)
}

func TestTrackedDiskNeedsResyncWhenLogCannotBeTrusted(t *testing.T) {
	cases := map[string]func(t *testing.T, path string) Options{
		"log deleted": func(t *testing.T, path string) Options {
			require.NoError(t, os.Remove(path+".hrl"))
			return Options{}
		},
		"corrupt record in the middle": func(t *testing.T, path string) Options {
			flipByte(t, path+".hrl", hrlHeaderSize+hrlRecHeaderSize+10)
			return Options{}
		},
		"corrupt record length": func(t *testing.T, path string) Options {
			flipByte(t, path+".hrl", int64(hrlHeaderSize+hrlRecHeaderSize+len(testBoot)+4))
			return Options{}
		},
		"corrupt header": func(t *testing.T, path string) Options {
			flipByte(t, path+".hrl", 9)
			return Options{}
		},
		"reboot without clean shutdown": func(t *testing.T, path string) Options {
			return Options{BootID: "boot-b"}
		},
	}
	for name, breakIt := range cases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "d.img")
			d := mustOpenDisk(t, path, 1<<20, Options{})
			require.NoError(t, d.WriteAt([]byte("hello"), 0, false))
			_, err := d.CloseCycle(time.Now(), false)
			require.NoError(t, err)
			require.NoError(t, d.WriteAt([]byte("world"), 4096, true))
			crashDisk(t, d)
			opts := breakIt(t, path)

			d2 := mustOpenDisk(t, path, 1<<20, opts)
			requireNeedsResync(t, d2)
			require.NoError(t, d2.WriteAt([]byte("still writable"), 0, true))
			require.NoError(t, d2.Close())
			d3 := mustOpenDisk(t, path, 1<<20, Options{})
			requireNeedsResync(t, d3) // the state survives restarts

			require.NoError(t, d3.ResetAfterResync(7))
			ok, _ := d3.NeedsResync()
			require.False(t, ok)
			require.Empty(t, d3.Pending())
			seq, err := d3.CloseCycle(time.Now(), false)
			require.NoError(t, err)
			require.Equal(t, uint64(7), seq)
		})
	}
}

func requireNeedsResync(t *testing.T, d *Tracked) {
	t.Helper()
	ok, why := d.NeedsResync()
	require.True(t, ok)
	require.NotEmpty(t, why)
	_, err := d.CloseCycle(time.Now(), false)
	require.ErrorIs(t, err, ErrNeedsResync)
	var re *ResyncError
	require.ErrorAs(t, err, &re)
	require.Empty(t, d.Pending())
}

// An image made whole from elsewhere (a recovery point materialized at
// promotion) opened with NewLog starts a change log, cycles from 1, and
// says nothing of a resync; the same image without NewLog needs one, with
// a warning.
func TestTrackedDiskNewLogStartsTrackingWithoutAWarning(t *testing.T) {
	for _, newLog := range []bool{true, false} {
		t.Run(fmt.Sprintf("NewLog=%t", newLog), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "d.img")
			require.NoError(t, os.WriteFile(path, bytes.Repeat([]byte{7}, 1<<20), 0o600))
			var logged bytes.Buffer
			d := mustOpenDisk(t, path, 1<<20, Options{NewLog: newLog, Logger: zerolog.New(&logged)})
			if !newLog {
				requireNeedsResync(t, d)
				require.Contains(t, logged.String(), `"level":"warn"`)
				require.Contains(t, logged.String(), "change log missing")
				return
			}
			require.Empty(t, logged.String())
			ok, why := d.NeedsResync()
			require.False(t, ok, why)
			require.NoError(t, d.WriteAt([]byte("tracked"), 4096, true))
			seq, err := d.CloseCycle(time.Now(), false)
			require.NoError(t, err)
			require.Equal(t, uint64(1), seq)
			c, err := d.Cycle(seq)
			require.NoError(t, err)
			require.Len(t, c.Extents, 1)
			require.FileExists(t, path+".hrl")
		})
	}
}

func TestTrackedDiskCleanShutdownSurvivesReboot(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.img")
	d := mustOpenDisk(t, path, 1<<20, Options{})
	require.NoError(t, d.WriteAt([]byte("x"), 0, false))
	require.NoError(t, d.Close())
	d2 := mustOpenDisk(t, path, 1<<20, Options{BootID: "another-boot"})
	ok, why := d2.NeedsResync()
	require.False(t, ok, why)
}

func TestTrackedDiskLogOverflowNeedsResync(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.img")
	d := mustOpenDisk(t, path, 1<<20, Options{})
	for i := range 9 { // 9 × 64 KiB > half of 1 MiB
		require.NoError(t, d.WriteAt(make([]byte, 64<<10), int64(i)<<16, false))
	}
	ok, why := d.NeedsResync()
	require.True(t, ok)
	require.Contains(t, why, "limit")
	_, err := d.CloseCycle(time.Now(), false)
	require.ErrorIs(t, err, ErrLogOverflow)
	require.ErrorIs(t, err, ErrNeedsResync)
	require.NoError(t, d.WriteAt([]byte("on"), 0, true), "the VM keeps writing")
	st, err := os.Stat(path + ".hrl")
	require.NoError(t, err)
	require.NoError(t, d.WriteAt(make([]byte, 64<<10), 0, false))
	st2, err := os.Stat(path + ".hrl")
	require.NoError(t, err)
	require.Equal(t, st.Size(), st2.Size(), "no longer logged")
	require.NoError(t, d.ResetAfterResync(1))
	_, err = d.CloseCycle(time.Now(), false)
	require.NoError(t, err)
}

func TestTrackedDiskGroupCommit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.img")
	d := mustOpenDisk(t, path, 8<<20, Options{})
	var wg sync.WaitGroup
	errs := make(chan error, 128)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 8 {
				off := int64(w*8+i) * 4096
				errs <- d.WriteAt(bytes.Repeat([]byte{byte(w + 1)}, 4096), off, true)
				if i%3 == 0 {
					errs <- d.Flush()
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	durable := 0
	for err := range errs {
		require.NoError(t, err)
		durable++
	}
	require.Less(t, d.fsyncs.Load(), int64(durable), "concurrent flushes share fsyncs")
	t.Logf("%d FUA writes and flushes, %d group commits", durable, d.fsyncs.Load())
	seq, err := d.CloseCycle(time.Now(), false)
	require.NoError(t, err)
	c, err := d.Cycle(seq)
	require.NoError(t, err)
	require.Len(t, c.Extents, 1)
	require.Equal(t, int64(256<<10), c.Extents[0].Length)
}

// TestTrackedDiskConcurrentCyclesAndAcks writes from several goroutines
// while another closes, reads and acknowledges cycles: the cycles applied in
// order must rebuild the image exactly.
func TestTrackedDiskConcurrentCyclesAndAcks(t *testing.T) {
	const size = 4 << 20
	path := filepath.Join(t.TempDir(), "c.img")
	d := mustOpenDisk(t, path, size, Options{MaxLogBytes: 1 << 30})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 150 {
				p := bytes.Repeat([]byte{byte(w*50 + i%50 + 1)}, 4096)
				if err := d.WriteAt(p, int64(w)<<20+int64(i%100)*4096, i%7 == 0); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	stop := make(chan struct{})
	go func() { wg.Wait(); close(stop) }()
	replica := make([]byte, size)
	closeOne := func() {
		seq, err := d.CloseCycle(time.Now(), false)
		require.NoError(t, err)
		c, err := d.Cycle(seq)
		require.NoError(t, err)
		applyCycle(replica, c)
		if seq%2 == 0 {
			require.NoError(t, d.Ack(seq-1))
		}
	}
	for done := false; !done; {
		select {
		case <-stop:
			done = true
		default:
			closeOne()
		}
	}
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	closeOne()
	require.Equal(t, readImage(t, path), replica)
}
