package cycletest

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/siterecovery/siterecovery/hostsync/cycle"
)

// Disks are the disks Random writes and NewModel holds, by name with their
// sizes: odd sizes on purpose. Read only.
var Disks = map[string]int64{"sda": 1<<20 + 4096, "sdb": 700_000}

// Random makes a cycle of vm of random data, zero and overlapping extents,
// compressible and not, on the Disks.
func Random(rng *rand.Rand, vm string, epoch, seq uint64, closedAt time.Time) cycle.Cycle {
	c := cycle.Cycle{VM: vm, Epoch: epoch, Seq: seq, ClosedAt: closedAt, AppConsistent: rng.IntN(4) == 0}
	for range rng.IntN(12) {
		disk := "sda"
		if rng.IntN(2) == 0 {
			disk = "sdb"
		}
		size := Disks[disk]
		length := int64(1 + rng.IntN(int(min(size, 200_000))))
		if rng.IntN(8) == 0 {
			length = min(size, int64(1+rng.IntN(600_000)))
		}
		off := rng.Int64N(size - length + 1)
		e := cycle.Extent{Disk: disk, Offset: off, Length: length}
		switch rng.IntN(5) {
		case 0:
			e.Zero = true
		case 1:
			e.Data = make([]byte, length)
			for i := range e.Data {
				e.Data[i] = byte(i / 100)
			}
		default:
			e.Data = make([]byte, length)
			FillRandom(rng, e.Data)
		}
		c.Extents = append(c.Extents, e)
	}
	return c
}

// FillRandom fills p with random bytes from rng.
func FillRandom(rng *rand.Rand, p []byte) {
	for i := 0; i+8 <= len(p); i += 8 {
		binary.LittleEndian.PutUint64(p[i:], rng.Uint64())
	}
	for i := len(p) &^ 7; i < len(p); i++ {
		p[i] = byte(rng.Uint32())
	}
}

// Model is the bytes of a VM's disks in memory, by disk name: what a
// replica (or an assembled cycle) must hold.
type Model map[string][]byte

// NewModel is a model of the Disks, all zeros.
func NewModel() Model {
	m := Model{}
	for name, size := range Disks {
		m[name] = make([]byte, size)
	}
	return m
}

// Apply writes c's extents into the model.
func (m Model) Apply(c cycle.Cycle) {
	for _, e := range c.Extents {
		dst := m[e.Disk][e.Offset:e.End()]
		if e.Zero {
			clear(dst)
		} else {
			copy(dst, e.Data)
		}
	}
}

// Clone is a deep copy of the model.
func (m Model) Clone() Model {
	out := Model{}
	for k, v := range m {
		out[k] = append([]byte(nil), v...)
	}
	return out
}

// RequireSameBytes fails t unless got holds the bytes of want, naming the
// first differing offset (a disk image is too large for a diff).
func RequireSameBytes(t testing.TB, want, got []byte, what string) {
	t.Helper()
	if len(want) != len(got) {
		t.Fatalf("%s: sizes differ: want %d bytes, got %d", what, len(want), len(got))
	}
	for i := range want {
		if want[i] != got[i] {
			t.Fatalf("%s: first difference at byte %d (want %#x, got %#x)", what, i, want[i], got[i])
		}
	}
}
