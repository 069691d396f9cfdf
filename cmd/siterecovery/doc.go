// Command siterecovery is the whole product in one binary: the control plane
// (serve), the host agent (agent), the PKI for mTLS (auth init), the two-site
// demo (demo), the benchmarks (bench), the soak and scale runs, and the
// operator commands that talk to the control plane over NATS.
//
// This package is main, its flags and one small file per subcommand, each
// parsing its flags and calling the package that does the work:
// cmd/siterecovery/controlplane (serve), hostsync (agent), cmd/siterecovery/pki
// (auth init), test/demo, test/bench, test/soak and test/scale. The operator
// commands are one declarative table (op_commands.go) over the control
// plane's micro service; docs/reference/cli.md lists every command and flag.
package main
