// Package world is the one two-site world the demo, the benchmarks, the
// soak, the scale run and the in-process tests are built on: the control
// plane of `siterecovery serve` embedded (its own NATS server with
// JetStream, SyncAlways), the host agents in this process, each with its
// own NATS connection, event log and data directory as a real agent has,
// and the fabric of two sites (primary and secondary, a host and a cloud
// each, a policy, a pairing).
//
// World holds them; Fabric is the fabric's commands; the VM helpers create,
// enable and wait for VMs through the control plane and its log; the disk
// helpers name the image files on disk and reach the disks through their
// NBD exports, as a guest or a test reader would.
//
// StartAgent is the one place outside package main that constructs a
// hostsync.Agent. Package hostsync's own tests cannot import this package
// (it imports hostsync) and keep their own.
package world
