// Package scale is `siterecovery scale`: one control plane of package
// world with many VMs protected by simulated hosts (goroutines sending
// what agents report, with no disks behind them), its memory, query
// latency and events/s at steady state, then the rebuild of fresh
// projections from a large log. Its figures have the shape of package
// bench's.
package scale
