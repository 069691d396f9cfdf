// Package replica is the recovery host's copy of one VM's disks (Replica):
// a plain sparse raw image per disk at the latest recovery point, the undo
// data that turns it back into every older retained point (Point), a hash
// tree per disk and a state file. A cycle (hostsync/cycle) applies whole
// or not at all, across a crash at any instant: Apply reserves the blocks,
// writes and syncs the undo data, commits with a pending record, writes
// the images and records the point; Open finishes or rolls back whatever
// a crash interrupted (Options.Hook and the Stage constants name
// the steps, for tests that crash between them).
//
// How it fits: the agent (hostsync) opens one Replica per VM it is the
// recovery host of (Open, OpenWithOptions), hands it each assembled cycle
// (Apply; ApplyInitial and SyncInitial for the first copy of an initial
// replication, which needs no undo data; Preimage to prepare a cycle's
// undo data batch by batch as it arrives), reports the points (Points),
// prunes them by policy (Prune, RetentionPolicy), fences older epochs
// (Fence), serves test failovers from a copy-on-write view of a point
// (TestCopy: a TestView whose TestDisks the agent serves over NBD),
// promotes a point (MaterializePoint, RevertTo) and answers verify and
// resync with its hash trees (Roots, HashTree, RehashLeaves, RehashRoots,
// SubHashes).
//
// Its files (replicas/<vm>/ in the agent's data directory) are described
// in docs/reference/files.md and defined, with their format versions, in
// state.go (the state file replica.json, format 1, which also versions the
// pending record), pending.go (the pending record pending.json) and
// undo.go (the undo files undo/<n>.undo, version 1); a file of another
// version is refused with ErrVersion. The hash tree files are
// hostsync/hashtree's.
//
// It imports events (DiskSpec), hostsync/cycle, hostsync/disk (OpenImage),
// hostsync/hashtree, hostsync/durable and hostsync/sparse, and nothing of
// the agent, of the agent protocol or of NATS.
package replica
