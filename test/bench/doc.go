// Package bench is `siterecovery bench`: the end-to-end benchmarks, each
// figure beside a baseline measured in the same run on the same machine
// (cp + sync, rsync, raw JetStream, qemu-nbd), run on the two-site world
// of package world, and the rewrite of the generated section of
// docs/benchmarks.md. Config.Smoke runs every benchmark at tiny sizes
// (the test), Config.Quick at small ones.
package bench
