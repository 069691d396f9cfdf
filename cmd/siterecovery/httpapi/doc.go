// Package httpapi is the HTTP side of `siterecovery serve`: the JSON API
// under /api/v1 that forwards every command and query to the siterecovery
// micro service over NATS (it decides nothing: one implementation of every
// rule, in handlers), the live event stream (server-sent events at
// /api/v1/stream), the Prometheus metrics at /metrics, read at scrape time
// from the event log and the read models, and the web console at /, whose
// HTML, CSS and JavaScript are embedded in the binary (console/).
//
// The control plane listens (Listen, with TLS when a certificate
// directory is given), adds the routes (Register) and wraps them with the
// bearer tokens of that directory (WithBearerAuth); docs/security.md
// describes the tokens and the API.
package httpapi
