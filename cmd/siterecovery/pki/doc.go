// Package pki is the certificate directory of `siterecovery auth init`
// and everything read from it (docs/security.md): the CA, the server's
// certificate, one client certificate per host and per role (host,
// operator, viewer, control), the HTTP bearer tokens and a nats CLI
// context for the operator and the viewer (WriteDir); the
// TLS configuration of the NATS clients (NATSOptions) and of the HTTPS
// endpoint (ServerTLS); and the NATS permissions of each role, as the
// embedded server's users (ServerAuth), and which roles may publish or
// subscribe to a subject (RolesAllowed: what a refused call needs).
//
// A client certificate's subject is CN=<name>,OU=<role>,O=siterecovery;
// the server maps it to the NATS user of that role. Package main parses
// the flags (--tls-dir, auth init's) and calls this package; the control
// plane and the HTTP API read the same directory through it.
package pki
