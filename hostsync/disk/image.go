package disk

import "os"

// OpenImage opens the raw image at path for reading and writing, creating
// it if it is missing; an empty image is sized to size bytes, an image of
// another size is an *ImageSizeError. The replica keeps its images so; a
// tracked disk opens its own image (Open), syncs a new one, and never
// creates one without a size.
func OpenImage(path string, size int64) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err == nil && st.Size() == 0 && size > 0 {
		err = f.Truncate(size)
	} else if err == nil && st.Size() != size {
		err = &ImageSizeError{Path: path, Size: st.Size(), Want: size}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
