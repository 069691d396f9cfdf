package hostsync

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/hostsync/batch"
	"github.com/siterecovery/siterecovery/hostsync/cycle"
)

func TestChunkExtentsCoverTheChunk(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for range 50 {
		p := make([]byte, rng.IntN(8*zeroBlock)+1)
		for range rng.IntN(5) {
			off := rng.IntN(len(p))
			n := min(len(p)-off, rng.IntN(2*zeroBlock)+1)
			for i := off; i < off+n; i++ {
				p[i] = byte(rng.IntN(255) + 1)
			}
		}
		const base = 1 << 30
		got := make([]byte, len(p))
		next := int64(base)
		for i, e := range chunkExtents("d0", base, p) {
			require.Equal(t, next, e.Offset, "extent %d is contiguous", i)
			next = e.End()
			if e.Zero {
				require.Empty(t, e.Data)
				continue
			}
			require.Len(t, e.Data, int(e.Length))
			copy(got[e.Offset-base:], e.Data)
		}
		require.Equal(t, int64(base+len(p)), next)
		require.Equal(t, p, got)
	}
}

func TestIRPlan(t *testing.T) {
	plan := irPlan([]events.DiskSpec{{Name: "a", Size: 5 << 20}, {Name: "b", Size: 1 << 20}}, 2<<20)
	require.Equal(t, []irChunk{{"a", 0, 2 << 20}, {"a", 2 << 20, 2 << 20}, {"a", 4 << 20, 1 << 20}, {"b", 0, 1 << 20}}, plan)
}

func TestByteBudgetBoundsAndNeverStarves(t *testing.T) {
	b := newByteBudget(100)
	require.True(t, b.tryAcquire(60))
	require.False(t, b.tryAcquire(60))
	var wg sync.WaitGroup
	got := make(chan struct{})
	wg.Go(func() {
		require.NoError(t, b.acquire(context.Background(), 60))
		close(got)
	})
	select {
	case <-got:
		t.Fatal("acquired over the limit")
	case <-time.After(50 * time.Millisecond):
	}
	b.release(60)
	<-got
	b.release(60)
	require.True(t, b.tryAcquire(500), "an oversized request passes when nothing is in flight")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, b.acquire(ctx, 1), context.Canceled)
	b.release(500)
	wg.Wait()
}

func TestBatchSubjectChecked(t *testing.T) {
	require.NoError(t, checkBatchSubject("sr.delta.dr.hv01.web01.3", batch.Batch{Epoch: 3}))
	require.ErrorIs(t, checkBatchSubject("sr.delta.dr.hv01.web01.2", batch.Batch{Epoch: 3}), cycle.ErrInvalid)
	require.ErrorIs(t, checkBatchSubject("sr.delta.dr.hv01.web01.x", batch.Batch{Epoch: 3}), cycle.ErrInvalid)
}

func TestAgentConfigChecked(t *testing.T) {
	_, err := NewAgent(AgentConfig{Host: "bad host"})
	require.ErrorIs(t, err, ErrAgentConfig)
	_, err = NewAgent(AgentConfig{Host: "hv01"})
	require.ErrorIs(t, err, ErrAgentConfig)
	_, err = NewAgent(AgentConfig{Host: "hv01", DataDir: t.TempDir(), Log: events.NewMemLog()})
	require.ErrorIs(t, err, ErrAgentConfig)
	require.ErrorContains(t, err, "no control plane in the transport")
}

// TestCloseDueSpreadsVMsAndKeepsTheInterval: the first cycle closes at
// once; then, polled as the controller polls, a VM's closes are never more
// than the copy interval (plus one poll) apart, and VMs with the same
// policy close at different instants of the interval.
func TestCloseDueSpreadsVMsAndKeepsTheInterval(t *testing.T) {
	const every, poll = 5 * time.Second, 200 * time.Millisecond
	start := time.Date(2026, 11, 26, 6, 0, 0, 0, time.UTC)
	require.True(t, closeDue("web01", time.Time{}, start, every))
	phases := map[time.Duration]bool{}
	for i := range 10 {
		vm := fmt.Sprintf("web%02d", i)
		last := start
		var closes []time.Time
		for now := start; now.Before(start.Add(time.Minute)); now = now.Add(poll) {
			if closeDue(vm, last, now, every) {
				require.LessOrEqual(t, now.Sub(last), every+poll, "vm %s closed %s after the last", vm, now.Sub(last))
				closes = append(closes, now)
				last = now
			}
		}
		require.GreaterOrEqual(t, len(closes), 11, "vm %s closed every interval", vm)
		for j := 2; j < len(closes); j++ {
			require.InDelta(t, every, closes[j].Sub(closes[j-1]), float64(poll), "vm %s keeps its grid", vm)
		}
		phases[closes[len(closes)-1].Sub(start)%every] = true
	}
	require.Greater(t, len(phases), 5, "ten VMs close at different instants of the interval")
}
