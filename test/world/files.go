package world

import (
	"bytes"
	"errors"
	"io"
	"os"
)

// SameFiles compares two files; a difference is a *DiffError.
func SameFiles(a, b string) error {
	fa, err := os.Open(a)
	if err != nil {
		return err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return err
	}
	defer fb.Close()
	ba, bb := make([]byte, 4<<20), make([]byte, 4<<20)
	for off := int64(0); ; {
		na, ea := io.ReadFull(fa, ba)
		nb, eb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return &DiffError{A: a, B: b, Off: off}
		}
		off += int64(na)
		done := errors.Is(ea, io.EOF) || errors.Is(ea, io.ErrUnexpectedEOF)
		if done && (errors.Is(eb, io.EOF) || errors.Is(eb, io.ErrUnexpectedEOF)) {
			return nil
		}
		if err := errors.Join(ea, eb); err != nil {
			return err
		}
	}
}

// SameBytes says whether two files hold the same bytes.
func SameBytes(a, b string) (bool, error) {
	err := SameFiles(a, b)
	var diff *DiffError
	if errors.As(err, &diff) {
		return false, nil
	}
	return err == nil, err
}
