// Package cycle holds the unit the data path moves: a Cycle, every change to
// a VM's disks between two closes of its change log, as Extents (a Range of
// one disk with its data). The source's tracked disks close cycles
// (hostsync/disk), the batch format (hostsync/batch) carries them over the
// wire, and the recovery host's replica applies one whole or not at all.
//
// The errors of a cycle refused for its place in the sequence (SeqError:
// another epoch, a gap, already applied; GapError: a batch missing within
// it) or its shape (ErrInvalid, CheckExtent) are here, so that the batch
// assembler and the replica, which both refuse cycles, share them without
// importing each other. It imports nothing of the project.
package cycle
