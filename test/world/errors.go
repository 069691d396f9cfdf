package world

import "fmt"

// DiffError: two files SameFiles compared differ in the 4 MiB at Off.
type DiffError struct {
	A, B string
	Off  int64
}

func (e *DiffError) Error() string {
	return fmt.Sprintf("%s and %s differ in the 4 MiB at byte %d", e.A, e.B, e.Off)
}
