// Package sparse reads the layout of sparse files: which runs of a file are
// data and which are holes (Regions, with SEEK_DATA/SEEK_HOLE), and whether
// a block is all zeros (IsZero), and copies a sparse file keeping its holes
// (Copy). Disk images are sparse files: the hash tree skips their holes when
// it hashes an image, the replica records a hole as a zero extent in its
// undo data, and copies (a recovery point materialized, a fenced disk set
// aside) and resyncs leave zero blocks unwritten so images stay sparse. It
// imports only the standard library.
package sparse
