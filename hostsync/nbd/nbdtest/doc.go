// Package nbdtest drives an NBD server from tests with the real clients a
// hypervisor host has: qemu-io, qemu-img and qemu-nbd (Debian's
// qemu-utils), nbdcopy and nbdinfo (libnbd-bin). `make test` installs them;
// a test that needs one fails with the command that installs it, never
// skips. The NBD server's own tests (hostsync/nbd) and the tracked disk's
// tests through NBD (hostsync/disk) use it. It imports nothing of the
// project.
package nbdtest
