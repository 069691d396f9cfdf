package batch

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/hostsync/cycle"
	"github.com/siterecovery/siterecovery/hostsync/cycle/cycletest"
)

var allCompressions = []string{CompressionNone, CompressionS2, CompressionZstd}

func TestBatchRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, comp := range allCompressions {
		for _, maxPayload := range []int{2048, 64 << 10, 8 << 20} {
			asm := NewAssembler("web01", 3, 1)
			for seq := uint64(1); seq <= 5; seq++ {
				c := cycletest.Random(rng, "web01", 3, seq, time.Unix(1700000000, int64(seq)).UTC())
				msgs, err := EncodeCycle(c, Options{MaxPayload: maxPayload, Compression: comp})
				require.NoError(t, err)
				got := assembleAll(t, asm, msgs, maxPayload)
				requireSameCycle(t, c, got)
			}
		}
	}
}

func assembleAll(t *testing.T, asm *Assembler, msgs [][]byte, maxPayload int) cycle.Cycle {
	t.Helper()
	for i, msg := range msgs {
		require.LessOrEqual(t, len(msg), maxPayload)
		b, err := Decode(msg)
		require.NoError(t, err)
		require.Equal(t, i, b.Index)
		require.Equal(t, i == len(msgs)-1, b.Last)
		c, done, err := asm.Add(b)
		require.NoError(t, err)
		if done {
			require.Equal(t, len(msgs)-1, i)
			return c
		}
	}
	t.Fatal("no cycle assembled")
	return cycle.Cycle{}
}

func requireSameCycle(t *testing.T, want, got cycle.Cycle) {
	t.Helper()
	require.Equal(t, want.VM, got.VM)
	require.Equal(t, want.Epoch, got.Epoch)
	require.Equal(t, want.Seq, got.Seq)
	require.True(t, want.ClosedAt.Equal(got.ClosedAt))
	require.Equal(t, want.AppConsistent, got.AppConsistent)
	require.Equal(t, want.Initial, got.Initial)
	a, b := cycletest.NewModel(), cycletest.NewModel()
	a.Apply(want)
	b.Apply(got)
	require.Equal(t, a, b)
}

func TestBatchSplitsBigExtents(t *testing.T) {
	data := make([]byte, 1<<20)
	cycletest.FillRandom(rand.New(rand.NewPCG(3, 4)), data)
	c := cycle.Cycle{VM: "db01", Epoch: 1, Seq: 1, Extents: []cycle.Extent{{Disk: "sda", Offset: 0, Length: 1 << 20, Data: data}}}
	msgs, err := EncodeCycle(c, Options{MaxPayload: 64 << 10, Compression: CompressionZstd})
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(msgs), 16)
	got := assembleAll(t, NewAssembler("db01", 1, 1), msgs, 64<<10)
	requireSameCycle(t, c, got)
}

func TestBatchEmptyCycle(t *testing.T) {
	c := cycle.Cycle{VM: "idle", Epoch: 2, Seq: 9, ClosedAt: time.Now().UTC(), AppConsistent: true}
	msgs, err := EncodeCycle(c, Options{MaxPayload: 8 << 20})
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	b, err := Decode(msgs[0])
	require.NoError(t, err)
	require.True(t, b.Last)
	require.True(t, b.AppConsistent)
	require.Empty(t, b.Extents)
	got, done, err := NewAssembler("idle", 2, 9).Add(b)
	require.NoError(t, err)
	require.True(t, done)
	require.Empty(t, got.Extents)
}

func TestBatchBadOptions(t *testing.T) {
	c := cycle.Cycle{VM: "vm", Epoch: 1, Seq: 1}
	_, err := EncodeCycle(c, Options{MaxPayload: 8 << 20, Compression: "lz4"})
	require.ErrorIs(t, err, ErrOptions)
	_, err = EncodeCycle(c, Options{MaxPayload: 100})
	require.ErrorIs(t, err, ErrOptions)
	bad := cycle.Cycle{VM: "vm", Epoch: 1, Seq: 1, Extents: []cycle.Extent{{Disk: "sda", Length: 10, Data: []byte{1}}}}
	_, err = EncodeCycle(bad, Options{MaxPayload: 8 << 20})
	require.ErrorIs(t, err, cycle.ErrInvalid)
}

func TestBatchCorruptionDetected(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, comp := range allCompressions {
		c := cycletest.Random(rng, "web01", 1, 1, time.Now())
		c.Extents = append(c.Extents, cycle.Extent{Disk: "sda", Offset: 1, Length: 3000, Data: make([]byte, 3000)})
		msgs, err := EncodeCycle(c, Options{MaxPayload: 4096, Compression: comp})
		require.NoError(t, err)
		msg := msgs[0]
		for i := range msg {
			for _, flip := range []byte{0x01, 0x80, 0xff} {
				bad := append([]byte(nil), msg...)
				bad[i] ^= flip
				_, err := Decode(bad)
				require.Error(t, err, "byte %d flipped by %#x", i, flip)
				require.True(t, errors.Is(err, ErrCorrupt) || errors.Is(err, ErrVersion), "byte %d: %v", i, err)
			}
		}
		_, err = Decode(msg[:len(msg)-1])
		require.ErrorIs(t, err, ErrCorrupt)
	}
}

// TestBatchDecompressionBomb: a batch declaring a huge body is refused
// before anything is allocated, even with a valid CRC.
func TestBatchDecompressionBomb(t *testing.T) {
	msgs, err := EncodeCycle(cycle.Cycle{VM: "vm", Epoch: 1, Seq: 1, Extents: []cycle.Extent{{Disk: "d", Length: 100000, Zero: true}}}, Options{MaxPayload: 4096, Compression: CompressionS2})
	require.NoError(t, err)
	msg := append([]byte(nil), msgs[0]...)
	binary.LittleEndian.PutUint32(msg[40:], MaxBody+1)
	resealCRC(msg)
	_, err = Decode(msg)
	require.ErrorIs(t, err, ErrTooLarge)
	binary.LittleEndian.PutUint32(msg[40:], 1<<20)
	resealCRC(msg)
	_, err = Decode(msg)
	require.ErrorIs(t, err, ErrCorrupt)
}

func resealCRC(msg []byte) {
	end := len(msg) - 4
	binary.LittleEndian.PutUint32(msg[end:], crc32.Checksum(msg[:end], crcTable))
}

func TestAssemblerRefusesGapsEpochsAndSequences(t *testing.T) {
	data := make([]byte, 10000)
	c := cycle.Cycle{VM: "web01", Epoch: 4, Seq: 7, Extents: []cycle.Extent{{Disk: "sda", Length: 10000, Data: data}}}
	msgs, err := EncodeCycle(c, Options{MaxPayload: 2048})
	require.NoError(t, err)
	require.Greater(t, len(msgs), 3)
	batches := make([]Batch, len(msgs))
	for i, m := range msgs {
		batches[i], err = Decode(m)
		require.NoError(t, err)
	}
	asm := NewAssembler("web01", 4, 7)

	_, _, err = asm.Add(batches[1])
	var gap *cycle.GapError
	require.ErrorAs(t, err, &gap)
	require.ErrorIs(t, err, cycle.ErrBatchGap)

	_, done, err := asm.Add(batches[0])
	require.NoError(t, err)
	require.False(t, done)
	_, done, err = asm.Add(batches[0]) // duplicate: ignored
	require.NoError(t, err)
	require.False(t, done)

	other := batches[1]
	other.Epoch = 3
	_, _, err = asm.Add(other)
	require.ErrorIs(t, err, cycle.ErrStaleEpoch)
	ahead := batches[1]
	ahead.Cycle = 8
	_, _, err = asm.Add(ahead)
	require.ErrorIs(t, err, cycle.ErrSeqGap)
	wrongVM := batches[1]
	wrongVM.VM = "db01"
	_, _, err = asm.Add(wrongVM)
	require.ErrorIs(t, err, cycle.ErrInvalid)

	var got cycle.Cycle
	for _, b := range batches[1:] {
		got, done, err = asm.Add(b)
		require.NoError(t, err)
	}
	require.True(t, done)
	requireSameCycle(t, c, got)
	require.Equal(t, uint64(8), asm.Next())

	_, _, err = asm.Add(batches[len(batches)-1]) // redelivery of an applied cycle
	require.ErrorIs(t, err, cycle.ErrApplied)
}

func TestBatchMsgID(t *testing.T) {
	require.Equal(t, "web01.3.17.2", MsgID("web01", 3, 17, 2))
	require.NotEqual(t, MsgID("web01", 3, 17, 2), MsgID("web01", 4, 17, 2))
}

func FuzzDecodeBatch(f *testing.F) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, comp := range allCompressions {
		msgs, err := EncodeCycle(cycletest.Random(rng, "vm", 1, 1, time.Now()), Options{MaxPayload: 4096, Compression: comp})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(msgs[0])
	}
	f.Add([]byte("SRDB"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		b, err := Decode(msg)
		if err != nil {
			return
		}
		again, err := Encode(b)
		if err != nil {
			t.Fatalf("decoded batch does not re-encode: %v", err)
		}
		b2, err := Decode(again)
		if err != nil {
			t.Fatalf("re-encoded batch does not decode: %v", err)
		}
		if b2.VM != b.VM || b2.Cycle != b.Cycle || len(b2.Extents) != len(b.Extents) || !b2.ClosedAt.Equal(b.ClosedAt) {
			t.Fatalf("round trip changed the batch: %+v vs %+v", b, b2)
		}
	})
}

func BenchmarkEncodeDecodeBatch(b *testing.B) {
	rng := rand.New(rand.NewPCG(9, 10))
	c := cycle.Cycle{VM: "web01", Epoch: 1, Seq: 1}
	for i := range 128 { // 8 MiB: half random, half text-like
		data := make([]byte, 64<<10)
		if i%2 == 0 {
			cycletest.FillRandom(rng, data)
		} else {
			for j := range data {
				data[j] = "siterecovery replicates disks "[j%30]
			}
		}
		c.Extents = append(c.Extents, cycle.Extent{Disk: "sda", Offset: int64(i) * 1 << 20, Length: 64 << 10, Data: data})
	}
	for _, comp := range allCompressions {
		b.Run(comp, func(b *testing.B) {
			var wire int
			b.SetBytes(8 << 20)
			for b.Loop() {
				msgs, err := EncodeCycle(c, Options{MaxPayload: 8 << 20, Compression: comp})
				if err != nil {
					b.Fatal(err)
				}
				wire = 0
				for _, m := range msgs {
					wire += len(m)
					if _, err := Decode(m); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(wire)/float64(8<<20), "wire/raw")
		})
	}
}

// EncodeCycleEach hands out the batches one at a time in one reused
// buffer (EncodeCycle, which TestBatchRoundTrip decodes, keeps copies of
// them); an error of emit stops it.
func TestEncodeCycleEachReusesOneBuffer(t *testing.T) {
	rng := rand.New(rand.NewPCG(71, 72))
	data := make([]byte, 256<<10)
	cycletest.FillRandom(rng, data)
	c := cycle.Cycle{VM: "web01", Epoch: 2, Seq: 1, ClosedAt: time.Unix(1_800_000_000, 0),
		Extents: []cycle.Extent{{Disk: "sda", Offset: 0, Length: int64(len(data)), Data: data}}}
	opts := Options{MaxPayload: 64 << 10}
	want, err := EncodeCycle(c, opts)
	require.NoError(t, err)
	require.Greater(t, len(want), 3)
	var got [][]byte
	var first *byte
	require.NoError(t, EncodeCycleEach(c, opts, func(b []byte) error {
		if first == nil {
			first = &b[0]
		}
		require.True(t, first == &b[0], "batch %d in a buffer of its own", len(got))
		got = append(got, bytes.Clone(b))
		return nil
	}))
	require.Equal(t, want, got)

	stop := errors.New("stop")
	calls := 0
	err = EncodeCycleEach(c, opts, func([]byte) error { calls++; return stop })
	require.ErrorIs(t, err, stop)
	require.Equal(t, 1, calls)
}
