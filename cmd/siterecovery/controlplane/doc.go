// Package controlplane is what `siterecovery serve` runs: the embedded
// NATS server with JetStream (unless Config.NATSURL names a server or a
// cluster), the event log, the projections, the command service with the
// agents' reports, the process manager, the health monitor, the
// automation runner, the loop that creates each site's delta stream, and
// the HTTP endpoint (package httpapi). With Config.TLSDir every connection
// is mTLS with the certificates of package pki.
//
// Open starts it all, URL is the NATS URL agents and operators use, Close
// stops everything in reverse order. The demo, the benchmarks, the soak
// and the scale run embed it through test/world, as the tests do; they
// read its log, read models and servers through the accessors (Log,
// Store, Conn, Server, HTTPAddr).
package controlplane
