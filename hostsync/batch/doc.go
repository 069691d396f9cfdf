// Package batch is the delta batch wire format: how a cycle (hostsync/cycle)
// travels from the source host to the recovery host as JetStream messages
// of bounded size. EncodeCycle (or EncodeCycleEach, without a buffer per
// batch) cuts a cycle into batches, compressed with S2 or zstd when that
// helps; the last carries the end-of-cycle marker and, format version 3
// (2 for unnamed, SHA-256 roots), the source disks' hash tree roots and the
// name of their hash. Decode checks and decodes one batch
// (magic, version, CRC32C, every length, no decompression bombs), and an
// Assembler on the recovery host puts a VM's batches back into whole cycles,
// in sequence, for the replica to apply.
//
// The format is named ("SRDB") and versioned where it is defined, in
// format.go (the header, the body) and roots.go (the roots section); its
// versions are VersionBase, VersionRoots and VersionRootsHash. It imports hostsync/cycle and
// the compressors, nothing of the agent and not NATS: the agent publishes
// and consumes the bytes.
package batch
