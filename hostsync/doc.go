// Package hostsync is the host agent's data path: it serves VM disks over
// NBD, tracks every write in a per-disk change log (the .hrl), closes cycles,
// ships them as delta batches on JetStream, applies them whole on the
// recovery host, keeps recovery points, and runs initial replication and
// resync.
//
// The pieces, in the order a write travels:
//
//   - The tracked disk (package hostsync/disk): the image and its change
//     log (the .hrl, format version 1); a write is logged before it
//     touches the image, FLUSH and FUA wait for both to be synced, a closed
//     cycle is read back from the log.
//   - The NBD server (package hostsync/nbd): fixed newstyle NBD on a Unix
//     socket, one export per disk where the VM is active at its epoch;
//     removing an export is a fence. Small writes run in the connection's
//     reading goroutine, the rest on a few workers.
//   - The shipper (shipper.go, ir.go, streams.go): closes a cycle every
//     copy interval, encodes it as batches of at most 1 MiB (package batch,
//     the delta batch wire format) and publishes them on the VM's delta
//     subject, keeping each cycle until the recovery host says it applied
//     it; initial replication reads the disks once in chunks.
//   - The receiver (receiver.go): one continuous consumer per VM, sharing
//     the host's pull budget, assembles whole cycles (batch.Assembler)
//     and hands them to the VM's replica.Replica. Both refuse a cycle out
//     of sequence with the errors of package cycle (cycle.SeqError,
//     cycle.GapError).
//   - The replica (package hostsync/replica): the raw images at the latest
//     point, the undo data of every retained older point, hash trees and a
//     state file; a cycle applies whole or not at all across a crash. Its
//     undo data is prepared batch by batch as the cycle arrives
//     (Replica.Preimage). The first copy of an initial replication takes a
//     shorter path without undo data (Replica.ApplyInitial). Test
//     failovers read a point through its copy-on-write TestView, which the
//     agent serves over NBD (testfailover.go).
//   - Hash trees (package hashtree; integrity*.go, irtree.go keep them
//     here): BLAKE3 over 64 KiB leaves on both sides, kept exact at every
//     close, for the per-cycle integrity check, verify, planned failover
//     and resync. Images are read as sparse files (package sparse) and
//     state files written crash-safely (package durable).
//   - Failover, fencing and resync (failover*.go, promote.go, fence.go,
//     resync*.go, testfailover.go).
//
// The Agent follows the event log and folds each VM; a VM's controller
// (agent_vm.go) acts on the folded state, never on single events, and only
// once the agent has read the log as it was when it started, so a restart
// picks up where it stopped without acting on the VM's past.
//
// The agent's messaging is its Transport (agent.go): small interfaces
// declared where they are used (ControlPlane for the reports, Peers for
// acks, leaves and verify, DeltaStreams and BatchPublisher for the delta
// streams, BatchConsumer and Delivery for the receiver). This package
// imports no NATS; hostsync/natsbus implements the Transport on a NATS
// connection.
package hostsync
