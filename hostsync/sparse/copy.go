package sparse

import (
	"context"
	"os"
)

// Copy copies size bytes of src into the empty dst, writing only its data
// regions (and of those, only the blocks that are not all zeros), and sets
// dst's size: dst is as sparse as src, or sparser. It moves src's offset
// (see Regions) and checks ctx between blocks.
func Copy(ctx context.Context, dst, src *os.File, size int64) error {
	if err := dst.Truncate(size); err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for _, reg := range Regions(src, 0, size) {
		if !reg.Data {
			continue
		}
		for off := reg.Offset; off < reg.Offset+reg.Length; {
			if err := ctx.Err(); err != nil {
				return err
			}
			n := min(int64(len(buf)), reg.Offset+reg.Length-off)
			if _, err := src.ReadAt(buf[:n], off); err != nil {
				return err
			}
			if !IsZero(buf[:n]) {
				if _, err := dst.WriteAt(buf[:n], off); err != nil {
					return err
				}
			}
			off += n
		}
	}
	return nil
}
