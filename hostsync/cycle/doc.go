// Package cycle holds the unit the data path moves: a Cycle, every change to
// a VM's disks between two closes of its change log, as Extents. The source's
// tracked disks close cycles (hostsync/disk), the batch format carries them
// over the wire, and the recovery host's replica applies one whole or not at
// all. It imports nothing of the project.
package cycle
