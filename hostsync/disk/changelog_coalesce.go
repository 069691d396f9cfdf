package disk

import (
	"container/heap"
	"fmt"
	"io"
	"slices"

	"github.com/siterecovery/siterecovery/hostsync/cycle"
)

// hrlPiece is a disk range whose content, at the end of a cycle, comes from
// record rec (the last record of the cycle that covers it).
type hrlPiece struct {
	off, end int64
	rec      int
}

// coalesceHRL returns, for the records of one cycle in log order, the disk
// ranges they changed with the record that wrote each range last, sorted by
// offset and without overlap. A sweep over the records' boundaries keeps the
// covering records in a max-heap by log order: O(n log n).
func coalesceHRL(recs []hrlRec) []hrlPiece {
	if len(recs) == 0 {
		return nil
	}
	bounds := make([]int64, 0, 2*len(recs))
	byStart := make([]int, 0, len(recs))
	for i, r := range recs {
		if r.length() == 0 {
			continue
		}
		bounds = append(bounds, r.off(), r.off()+r.length())
		byStart = append(byStart, i)
	}
	slices.Sort(bounds)
	bounds = slices.Compact(bounds)
	slices.SortStableFunc(byStart, func(a, b int) int { return hrlCmp(recs[a].off(), recs[b].off()) })

	var out []hrlPiece
	active := &hrlRecHeap{}
	next := 0
	for i := 0; i+1 < len(bounds); i++ {
		pos := bounds[i]
		for next < len(byStart) && recs[byStart[next]].off() <= pos {
			heap.Push(active, byStart[next])
			next++
		}
		for active.Len() > 0 && hrlEnd(recs[(*active)[0]]) <= pos {
			heap.Pop(active)
		}
		if active.Len() == 0 {
			continue
		}
		out = appendHRLPiece(out, hrlPiece{off: pos, end: bounds[i+1], rec: (*active)[0]})
	}
	return out
}

func hrlEnd(r hrlRec) int64 { return r.off() + r.length() }

func hrlCmp(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// appendHRLPiece extends the last hrlPiece when p continues it from the same record.
func appendHRLPiece(out []hrlPiece, p hrlPiece) []hrlPiece {
	if n := len(out); n > 0 && out[n-1].rec == p.rec && out[n-1].end == p.off {
		out[n-1].end = p.end
		return out
	}
	return append(out, p)
}

// hrlRecHeap is a max-heap of record indexes: the latest record on top.
type hrlRecHeap []int

func (h hrlRecHeap) Len() int           { return len(h) }
func (h hrlRecHeap) Less(i, j int) bool { return h[i] > h[j] }
func (h hrlRecHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *hrlRecHeap) Push(x any)        { *h = append(*h, x.(int)) }
func (h *hrlRecHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// buildCycleExtents turns a cycle's pieces into extents of disk: adjacent zero
// pieces merge into one zero extent, adjacent data pieces into one data
// extent whose bytes are read from the log.
func buildCycleExtents(disk string, recs []hrlRec, pieces []hrlPiece, log io.ReaderAt) ([]cycle.Extent, error) {
	var out []cycle.Extent
	for i := 0; i < len(pieces); {
		zero := recs[pieces[i].rec].kind == hrlZero
		j := i + 1
		for j < len(pieces) && pieces[j].off == pieces[j-1].end && (recs[pieces[j].rec].kind == hrlZero) == zero {
			j++
		}
		e := cycle.Extent{Disk: disk, Offset: pieces[i].off, Length: pieces[j-1].end - pieces[i].off, Zero: zero}
		if !zero {
			data, err := readHRLPieces(recs, pieces[i:j], e.Length, log)
			if err != nil {
				return nil, err
			}
			e.Data = data
		}
		out = append(out, e)
		i = j
	}
	return out, nil
}

func readHRLPieces(recs []hrlRec, ps []hrlPiece, total int64, log io.ReaderAt) ([]byte, error) {
	data := make([]byte, total)
	pos := int64(0)
	for _, p := range ps {
		r := recs[p.rec]
		n := p.end - p.off
		if _, err := log.ReadAt(data[pos:pos+n], r.dataAt+(p.off-r.off())); err != nil {
			return nil, fmt.Errorf("read change log at %d: %w", r.dataAt, err)
		}
		pos += n
	}
	return data, nil
}
