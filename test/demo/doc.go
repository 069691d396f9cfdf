// Package demo is `siterecovery demo`: the whole two-site system in one
// process (the world of package world: an embedded NATS server with
// JetStream, the control plane, the agents of hv01 at site primary and
// hv02 at site secondary), driven through the operator commands as an
// operator types them, and checked at every step: protection and initial
// replication, delta replication under a guest-like workload with the
// replicas compared byte for byte, a test failover, planned failovers of a
// recovery plan and back, an unplanned failover after a host dies, fencing
// and a resync.
//
// The operator commands live in package main; Config.CLI brings them in.
// The soak (package soak) runs the same world and checks through Demo.
package demo
