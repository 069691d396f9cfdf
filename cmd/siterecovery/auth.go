package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/siterecovery/siterecovery/cmd/siterecovery/pki"
)

// `siterecovery auth init --dir DIR --hosts h1,h2`: a CA, the server's
// certificate, one client certificate per host and per role, one HTTP
// bearer token per role and a nats CLI context for the operator and the
// viewer. ECDSA P-256; keys and tokens 0600.

// runAuth is `siterecovery auth init` (package pki writes the directory).
func runAuth(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "init" {
		fmt.Fprintln(stderr, "usage: siterecovery auth init --dir DIR --hosts h1,h2 [--server-names n1,n2] [--nats-url URL] [--days N] [--force]")
		return exitUsage
	}
	cfg, err := parseAuthInit(args[1:], stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "siterecovery auth init: %v\n", err)
		return exitUsage
	}
	if err := pki.WriteDir(cfg, time.Now()); err != nil {
		fmt.Fprintf(stderr, "siterecovery auth init: %v\n", err)
		return exitRefused
	}
	fmt.Fprintf(stdout, "wrote a CA, the server certificate, %d host certificates, operator, viewer and control certificates, HTTP tokens and nats CLI contexts to %s\n", len(cfg.Hosts), cfg.Dir)
	printContextUsage(stdout, cfg)
	return exitOK
}

// printContextUsage tells how to use the nats CLI contexts auth init wrote.
func printContextUsage(w io.Writer, cfg pki.InitConfig) {
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		dir = cfg.Dir
	}
	op, viewer := filepath.Join(dir, pki.ContextFile(pki.RoleOperator)), filepath.Join(dir, pki.ContextFile(pki.RoleViewer))
	name := pki.ContextName(pki.RoleViewer)
	fmt.Fprintf(w, "\nnats CLI contexts for %s (CA, certificate, key and the inbox prefix the server expects):\n", cfg.ContextURL())
	fmt.Fprintf(w, "  %s  operator: commands, queries, the log\n  %s    viewer: queries, the log\n", op, viewer)
	fmt.Fprintf(w, "use one by its path (it must end in .json):\n")
	fmt.Fprintf(w, "  nats --context %s stream view SR_EVENTS\n", viewer)
	fmt.Fprintf(w, "  nats --context %s sub 'sr.evt.>'\n", viewer)
	fmt.Fprintf(w, "or install one and select it, then run nats as usual (nats stream view SR_EVENTS):\n")
	fmt.Fprintf(w, "  mkdir -p ~/.config/nats/context && cp %s ~/.config/nats/context/%s.json && nats context select %s\n", viewer, name, name)
	fmt.Fprintf(w, "(the paths inside are absolute: on another machine keep the directory at %s, or edit them)\n", dir)
}

func parseAuthInit(args []string, stderr io.Writer) (pki.InitConfig, error) {
	var c pki.InitConfig
	var hosts, names listFlag
	fs := flag.NewFlagSet("auth init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Dir, "dir", "", "directory to write the certificates to (required)")
	fs.Var(&hosts, "hosts", "host names, comma-separated: one certificate each (required)")
	fs.Var(&names, "server-names", "more DNS names or IP addresses of the server certificate (127.0.0.1 and localhost are always in)")
	fs.IntVar(&c.Days, "days", 825, "validity of the certificates, in days")
	fs.BoolVar(&c.Force, "force", false, "overwrite existing files")
	fs.StringVar(&c.NATSURL, "nats-url", "", "the server URL the nats CLI contexts name (default nats://<first --server-names, else 127.0.0.1>:4222)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	c.Hosts, c.ServerNames = splitList(hosts), splitList(names)
	return c, c.Validate()
}
