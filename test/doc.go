// Package test holds the end-to-end drills: the real siterecovery binary
// (serve, agent, operator commands) run as processes against embedded NATS
// servers on loopback, checked from the outside with the CLI and raw NATS
// requests, through restarts, kills and rebuilds.
package test
