package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/siterecovery/siterecovery/cmd/siterecovery/pki"
)

// `siterecovery auth init --dir DIR --hosts h1,h2`: a CA, the server's
// certificate, one client certificate per host and per role, and one HTTP
// bearer token per role. ECDSA P-256; keys and tokens 0600.

// runAuth is `siterecovery auth init` (package pki writes the directory).
func runAuth(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "init" {
		fmt.Fprintln(stderr, "usage: siterecovery auth init --dir DIR --hosts h1,h2 [--server-names n1,n2] [--days N] [--force]")
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
	fmt.Fprintf(stdout, "wrote a CA, the server certificate, %d host certificates, operator, viewer and control certificates and HTTP tokens to %s\n", len(cfg.Hosts), cfg.Dir)
	return exitOK
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
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	c.Hosts, c.ServerNames = splitList(hosts), splitList(names)
	return c, c.Validate()
}
