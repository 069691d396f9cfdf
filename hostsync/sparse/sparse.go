package sparse

import (
	"errors"
	"os"
	"syscall"
)

// lseek whences of Linux for sparse files.
const (
	seekData = 3
	seekHole = 4
)

// Region is a run of bytes of a file that is data (Data set) or a hole.
type Region struct {
	Offset, Length int64
	Data           bool
}

// Regions splits [off, end) of f into data and hole regions, in order and
// covering the range, with SEEK_DATA/SEEK_HOLE; where the file system cannot
// tell, it is all data. It moves f's offset: callers use ReadAt/WriteAt
// only (or open f for this alone).
func Regions(f *os.File, off, end int64) []Region {
	var out []Region
	for off < end {
		start, err := f.Seek(off, seekData)
		if errors.Is(err, syscall.ENXIO) {
			return append(out, Region{off, end - off, false})
		}
		if err != nil {
			return append(out, Region{off, end - off, true})
		}
		if start >= end {
			return append(out, Region{off, end - off, false})
		}
		if start > off {
			out = append(out, Region{off, start - off, false})
		}
		stop, err := f.Seek(start, seekHole)
		if err != nil {
			stop = end
		}
		stop = min(stop, end)
		out = append(out, Region{start, stop - start, true})
		off = stop
	}
	return out
}

// IsZero says whether every byte of b is zero: a block that need not be
// written to keep a file sparse, or whose hash is the zero block's.
func IsZero(b []byte) bool {
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
