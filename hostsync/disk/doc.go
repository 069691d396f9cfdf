// Package disk is the source side's tracked disk: a raw sparse image and its
// change log (<image>.hrl), which records every write before it reaches the
// image, so that the changes of each copy interval can be closed as a cycle
// (hostsync/cycle), read back from the log and dropped once the recovery
// host has applied them.
//
// How it fits: the agent (hostsync) opens one Tracked per VM disk (Open),
// serves it over NBD (it is an nbd.ExportDisk, asserted in hostsync; this
// package does not import nbd), closes a cycle every copy interval
// (CloseCycle, or CloseCycleFolded to keep the agent's hash tree of the disk
// exact at the close), ships it (Cycle) and acknowledges it once applied
// (Ack). A log that cannot be trusted puts the disk in the NeedsResync state
// (ErrNeedsResync) until the agent has resynchronised the replica
// (ResetAfterResync). Tracked's doc states the durability and crash rules.
// OpenImage opens a plain image the way the recovery host's replica keeps
// them.
//
// The change log's format is version 1; changelog.go defines it, with the
// header and record layout, and docs/operations.md says where the files
// live. A log of another version is not read: the disk then needs a resync.
// The package imports nothing of the project but hostsync/cycle, and no
// NATS.
package disk
