// Package nbd is the Network Block Device protocol as the host agent speaks
// it: a Server that serves named exports (each an ExportDisk) on Unix
// sockets and TCP, and a small Client that the demo, the benchmarks and the
// tests write through.
//
// The protocol is the NBD project's, as its protocol document (doc/proto.md
// of github.com/NetworkBlockDevice/nbd) defines it; NBD has no version
// number, and this package speaks the fixed newstyle handshake with
// NBD_OPT_GO, NBD_OPT_INFO, NBD_OPT_LIST and NBD_OPT_EXPORT_NAME, and simple
// and structured replies. Server's doc lists the options, commands and flags
// served; the constants in proto.go carry the document's names.
//
// How it fits: the agent (hostsync) serves each disk of a VM active on its
// host as an export named <vm>.<disk>, the disk being a tracked disk
// (hostsync/disk) that logs every write before it reaches the image.
// Removing an export is a fence: once RemoveExport returns, the disk sees no
// further call from the server. The package imports nothing of the
// project; an ExportDisk reports a closed disk with an error that matches
// syscall.ESHUTDOWN (see ExportDisk), so the package needs no disk's errors.
// hostsync/nbd/nbdtest drives a server with the real clients (qemu-io,
// nbdcopy, nbdinfo) in tests.
package nbd
