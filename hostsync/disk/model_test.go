package disk

import (
	"bytes"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/hostsync/cycle"
)

// diskModel drives a tracked disk with random writes, zeroes, flushes, cycle
// closes, acks, crashes and restarts, against an in-memory model of the
// disk. At every cycle close, the cycles applied in order to a zero buffer
// (a replica) must equal the model; after every crash the recovered pending
// cycles must be the ones read before.
type diskModel struct {
	t       *testing.T
	rng     *rand.Rand
	path    string
	size    int64
	d       *Tracked
	model   []byte
	replica []byte
	pending []cycle.Cycle // closed, not acked, as read at close
}

func TestTrackedDiskModel(t *testing.T) {
	for seed := range uint64(4) {
		t.Run("", func(t *testing.T) {
			m := &diskModel{
				t: t, rng: rand.New(rand.NewPCG(seed, 42)),
				path: filepath.Join(t.TempDir(), "m.img"), size: 256 << 10,
			}
			m.model, m.replica = make([]byte, m.size), make([]byte, m.size)
			m.open()
			for range 250 {
				m.step()
			}
			m.closeCycle()
			require.Equal(t, m.model, readImage(t, m.path))
			require.NoError(t, m.d.Close())
		})
	}
}

func (m *diskModel) open() {
	d, err := Open(m.path, m.size, Options{BootID: testBoot, MaxLogBytes: 64 << 20})
	require.NoError(m.t, err)
	ok, why := d.NeedsResync()
	require.False(m.t, ok, why)
	m.d = d
	var seqs []uint64
	for _, c := range m.pending {
		seqs = append(seqs, c.Seq)
		got, err := d.Cycle(c.Seq)
		require.NoError(m.t, err)
		require.Equal(m.t, c.Extents, got.Extents, "cycle %d changed across a restart", c.Seq)
	}
	require.Equal(m.t, seqs, nonNil(d.Pending()))
}

func nonNil(s []uint64) []uint64 {
	if len(s) == 0 {
		return nil
	}
	return s
}

func (m *diskModel) step() {
	switch p := m.rng.IntN(100); {
	case p < 45:
		m.write()
	case p < 57:
		m.zero()
	case p < 65:
		require.NoError(m.t, m.d.Flush())
	case p < 78:
		m.closeCycle()
	case p < 85:
		m.ack()
	case p < 95:
		m.crash()
	default:
		require.NoError(m.t, m.d.Close())
		m.open()
	}
}

func (m *diskModel) span() (int64, int64) {
	n := 1 + m.rng.Int64N(16<<10)
	return m.rng.Int64N(m.size - n + 1), n
}

func (m *diskModel) write() {
	off, n := m.span()
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(m.rng.IntN(255) + 1)
	}
	require.NoError(m.t, m.d.WriteAt(data, off, m.rng.IntN(4) == 0))
	copy(m.model[off:], data)
}

func (m *diskModel) zero() {
	off, n := m.span()
	fua := m.rng.IntN(4) == 0
	if m.rng.IntN(2) == 0 {
		require.NoError(m.t, m.d.Trim(off, n, fua))
	} else {
		require.NoError(m.t, m.d.WriteZeroes(off, n, fua))
	}
	clear(m.model[off : off+n])
}

func (m *diskModel) closeCycle() {
	seq, err := m.d.CloseCycle(time.Now(), m.rng.IntN(5) == 0)
	require.NoError(m.t, err)
	c, err := m.d.Cycle(seq)
	require.NoError(m.t, err)
	applyCycle(m.replica, c)
	require.True(m.t, bytes.Equal(m.model, m.replica), "replica differs from the model at cycle %d", seq)
	m.pending = append(m.pending, c)
}

func (m *diskModel) ack() {
	if len(m.pending) == 0 {
		return
	}
	k := m.rng.IntN(len(m.pending))
	require.NoError(m.t, m.d.Ack(m.pending[k].Seq))
	m.pending = m.pending[k+1:]
}

// crash kills the disk without a clean shutdown, and leaves one of the log
// tails a kill -9 can leave: nothing more, a torn record, zeroed blocks, or
// a whole record whose image write never happened (which the model then
// holds: it was logged, so recovery must redo it).
func (m *diskModel) crash() {
	crashDisk(m.t, m.d)
	off, n := m.span()
	data := bytes.Repeat([]byte{byte(m.rng.IntN(255) + 1)}, int(n))
	rec := encodeTestRecord(hrlWrite, off, data)
	switch m.rng.IntN(4) {
	case 1:
		appendBytes(m.t, m.path+".hrl", rec[:m.rng.IntN(len(rec))])
	case 2:
		appendBytes(m.t, m.path+".hrl", make([]byte, 1+m.rng.IntN(8192)))
	case 3:
		appendBytes(m.t, m.path+".hrl", rec)
		copy(m.model[off:], data)
	}
	m.open()
	require.Equal(m.t, m.model, readImage(m.t, m.path), "image after recovery")
}
