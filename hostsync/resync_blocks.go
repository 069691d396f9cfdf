package hostsync

import (
	"crypto/sha256"
	"fmt"
	"io"

	"github.com/siterecovery/siterecovery/hostsync/cycle"
	"github.com/siterecovery/siterecovery/hostsync/hashtree"
)

// Sub-block refinement of a resync's diff. A hash tree leaf covers 64 KiB;
// scattered 4 KiB writes would make whole leaves differ, so for each
// differing leaf both sides hash its 4 KiB sub-blocks and only the
// differing sub-blocks cross.

// subBlock is the granularity a resync ships at.
const subBlock = hashtree.SubBlockSize

// subPerLeaf is the number of sub-blocks of a leaf.
const subPerLeaf = hashtree.LeafSize / subBlock

// subPage bounds the leaves of one sub-hash request (512 KiB of hashes).
const subPage = 1024

// leavesOf lists the leaf indexes the ranges cover.
func leavesOf(ranges []cycle.Range) []int {
	var out []int
	for _, br := range ranges {
		for l := br.Offset / hashtree.LeafSize; l*hashtree.LeafSize < br.Offset+br.Length; l++ {
			out = append(out, int(l))
		}
	}
	return out
}

// refineRanges narrows leaf-granular ranges to the differing sub-blocks,
// comparing local's sub-hashes with the peer's (asked subPage leaves at a
// time).
func refineRanges(local io.ReaderAt, size int64, ranges []cycle.Range, peer func(leaves []int) ([]byte, error)) ([]cycle.Range, error) {
	leaves := leavesOf(ranges)
	var out []cycle.Range
	for len(leaves) > 0 {
		page := leaves[:min(subPage, len(leaves))]
		leaves = leaves[len(page):]
		mine, err := hashtree.SubHashes(local, size, page)
		if err != nil {
			return nil, err
		}
		theirs, err := peer(page)
		if err != nil {
			return nil, err
		}
		if len(theirs) != len(mine) {
			return nil, fmt.Errorf("%w: %d sub-block hash bytes for %d leaves", ErrPeerUnavailable, len(theirs), len(page))
		}
		out = appendDiffering(out, page, mine, theirs, size)
	}
	return out, nil
}

func appendDiffering(out []cycle.Range, leaves []int, mine, theirs []byte, size int64) []cycle.Range {
	const h = sha256.Size
	for i, leaf := range leaves {
		for s := range subPerLeaf {
			at := (i*subPerLeaf + s) * h
			if string(mine[at:at+h]) == string(theirs[at:at+h]) {
				continue
			}
			off := int64(leaf)*hashtree.LeafSize + int64(s)*subBlock
			if off >= size {
				continue
			}
			length := min(int64(subBlock), size-off)
			if n := len(out); n > 0 && out[n-1].Offset+out[n-1].Length == off {
				out[n-1].Length += length
				continue
			}
			out = append(out, cycle.Range{Offset: off, Length: length})
		}
	}
	return out
}
