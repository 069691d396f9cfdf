// Package hashtree is the Merkle tree over a disk's 64 KiB blocks (Tree)
// that both sides of a VM keep: the source for its disks, the recovery host
// for its replica. Comparing two trees of one disk from the root down
// (Diff) finds the blocks that differ without reading the disks again;
// comparing their roots checks a replica against the source after a cycle,
// at verify and before a planned failover; resync copies only the blocks
// the trees disagree on, refined to the 4 KiB sub-blocks that differ
// within them (SubHashes).
//
// A tree is built by reading a disk once (Build, or BuildFile for an image
// by its path, skipping the holes of a sparse image) and then kept up to date by the extents written
// (Update, or Plan on other CPUs while the image is written and Apply
// after), at a cost that grows with the changes, not with the disk. Its
// leaves travel as bytes (LeafHashes, FromLeaves) and are saved in a tree
// file (Save, SaveCache, Load) whose format, named and versioned, is
// documented in file.go; the version names the hash (version 2: BLAKE3;
// version 1, of older builds: SHA-256), and a file of another version is
// refused with ErrVersion so its owner rebuilds the tree from the image.
// Where roots and leaves travel, HashName names the hash beside them and
// SameHash tells whether a peer's can be compared at all: a root of
// another hash is not a mismatch. Build and HashLeaves hash a disk's leaves
// on every CPU (runtime.GOMAXPROCS workers over leaf ranges), with results
// identical to one worker's.
//
// It imports hostsync/cycle (extents and ranges), hostsync/sparse and
// hostsync/durable, lukechampine.com/blake3, and nothing of the agent.
package hashtree
