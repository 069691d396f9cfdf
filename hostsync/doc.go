// Package hostsync is the host agent's data path: it serves VM disks over
// NBD, tracks every write in a per-disk change log (the .hrl), closes cycles,
// ships them as delta batches on JetStream, applies them whole on the
// recovery host, keeps recovery points, and runs initial replication and
// resync.
package hostsync
