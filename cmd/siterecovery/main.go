package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `siterecovery: disaster recovery for virtual machines between two sites.

Usage:
  siterecovery serve  [--data DIR] [--nats URL] [--listen ADDR] [--http ADDR] [--replicas N] [--tls-dir DIR]
  siterecovery agent  --host NAME [--nats URL] [--data DIR] [--tls-dir DIR]
  siterecovery auth init --dir DIR --hosts h1,h2 [--server-names n1,n2] [--days N] [--force]
  siterecovery demo   [--keep]
  siterecovery bench  [--json] [--quick]
  siterecovery <noun> <verb> [args] [--nats URL] [--json] [--tls-dir DIR [--tls-cert viewer]]
               (site, host, cloud, policy, pairing, netmap, vm, plan, status, jobs, job, events;
               see docs/operations.md, and docs/security.md for --tls-dir)
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches a subcommand and returns the exit status: 0 success, 1 a
// refused command or a failure, 2 bad usage.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch args[0] {
	case "serve":
		return runServe(ctx, args[1:], stdout, stderr)
	case "agent":
		return runAgent(ctx, args[1:], stdout, stderr)
	case "bench":
		return runBench(ctx, args[1:], stdout, stderr)
	case "scale":
		return runScaleCmd(ctx, args[1:], stdout, stderr)
	case "soak":
		return runSoakCmd(ctx, args[1:], stdout, stderr)
	case "demo":
		return runDemo(ctx, args[1:], stdout, stderr)
	case "auth":
		return runAuth(args[1:], stdout, stderr)
	}
	return runOperator(args, stdout, stderr)
}
