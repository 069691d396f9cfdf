package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/siterecovery/siterecovery/cmd/siterecovery/pki"
)

// The operator commands: one verb each, mirroring the micro service's
// commands (sr.cmd.<noun>.<verb>, CLI verbs with dashes) and queries
// (sr.q.<name>). Exit status: 0 success, 1 refused or failed (the error's
// code and message on stderr), 2 bad usage.

const (
	exitOK      = 0
	exitRefused = 1
	exitUsage   = 2
)

// defaultNATSURL is where the operator commands find the control plane.
const defaultNATSURL = "nats://127.0.0.1:4222"

// opOptions are the flags every operator command takes.
type opOptions struct {
	NATSURL string
	JSON    bool
	Timeout time.Duration
	// SendOnce: a request is sent again only while no control plane
	// responds, never because its reply is slow (vm verify).
	SendOnce  bool
	CommandID string
	AfterSeq  uint64
	// Wait and WaitTimeout: --wait on a long operation (op_wait.go).
	Wait        bool
	WaitTimeout time.Duration
	// TLSDir and TLSCert: connect with mTLS as <TLSCert>.pem of TLSDir.
	TLSDir  string
	TLSCert string
}

// usageError is bad usage: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// refusedError is an error reply of the control plane: exit status 1.
type refusedError struct{ Code, Message string }

func (e *refusedError) Error() string { return e.Code + ": " + e.Message }

// runOperator runs an operator command and returns its exit status.
func runOperator(args []string, stdout, stderr io.Writer) int {
	cmd, rest, err := findCommand(args)
	if err == nil {
		err = cmd.run(rest, stdout, stderr)
	}
	var ue *usageError
	var re *refusedError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "siterecovery: %s\n", ue.msg)
		if cmd != nil {
			fmt.Fprintf(stderr, "usage: siterecovery %s\n", cmd.usage())
		} else {
			fmt.Fprint(stderr, operatorUsage())
		}
		return exitUsage
	case errors.As(err, &re):
		fmt.Fprintf(stderr, "error: %s: %s\n", re.Code, re.Message)
		return exitRefused
	}
	fmt.Fprintf(stderr, "error: unavailable: %v\n", err)
	return exitRefused
}

// findCommand finds the command args name: one word (status, jobs, ...) or
// a noun and a verb.
func findCommand(args []string) (*opCommand, []string, error) {
	if len(args) == 0 {
		return nil, nil, usagef("no command")
	}
	for i := range opCommands {
		c := &opCommands[i]
		if c.verb == "" && c.noun == args[0] {
			return c, args[1:], nil
		}
	}
	if len(args) < 2 || strings.HasPrefix(args[1], "-") {
		if hasNoun(args[0]) {
			return nil, nil, usagef("%s: missing verb (%s)", args[0], strings.Join(verbsOf(args[0]), ", "))
		}
		return nil, nil, usagef("unknown command %q", args[0])
	}
	for i := range opCommands {
		c := &opCommands[i]
		if c.noun == args[0] && c.verb == args[1] {
			return c, args[2:], nil
		}
	}
	if hasNoun(args[0]) {
		return nil, nil, usagef("%s: unknown verb %q (verbs: %s)", args[0], args[1], strings.Join(verbsOf(args[0]), ", "))
	}
	return nil, nil, usagef("unknown command %q", args[0])
}

func hasNoun(noun string) bool { return len(verbsOf(noun)) > 0 }

func verbsOf(noun string) []string {
	var vs []string
	for _, c := range opCommands {
		if c.noun == noun && c.verb != "" {
			vs = append(vs, c.verb)
		}
	}
	return vs
}

func operatorUsage() string {
	var b strings.Builder
	b.WriteString("operator commands (each also takes --nats URL, --json, --timeout D):\n")
	for _, c := range opCommands {
		fmt.Fprintf(&b, "  siterecovery %s\n", c.usage())
	}
	return b.String()
}

// parseArgs parses flags placed anywhere among the positional arguments
// (siterecovery host register hv01 --site primary) and returns the
// positional ones.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			pos = append(pos, args[i+1:]...)
			i = len(args)
		case strings.HasPrefix(a, "-") && len(a) > 1:
			flags = append(flags, a)
			name := strings.TrimLeft(a, "-")
			if strings.Contains(name, "=") || isBoolFlag(fs, name) {
				continue
			}
			if i+1 < len(args) {
				flags = append(flags, args[i+1])
				i++
			}
		default:
			pos = append(pos, a)
		}
	}
	if err := fs.Parse(flags); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, usagef("%v", err)
	}
	return pos, nil
}

func isBoolFlag(fs *flag.FlagSet, name string) bool {
	f := fs.Lookup(name)
	if f == nil {
		return false
	}
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// commonFlags adds the flags every command takes.
func commonFlags(fs *flag.FlagSet, o *opOptions, command bool) {
	url := os.Getenv("SR_NATS_URL")
	if url == "" {
		url = defaultNATSURL
	}
	fs.StringVar(&o.NATSURL, "nats", url, "NATS URL of the control plane (env SR_NATS_URL)")
	fs.BoolVar(&o.JSON, "json", false, "print the reply as JSON")
	fs.DurationVar(&o.Timeout, "timeout", defaultTimeout, "how long to wait for the reply, sending again while no control plane answers")
	fs.StringVar(&o.TLSDir, "tls-dir", tlsDirFlagDefault(), "directory with ca.pem and the client certificate: connect with mTLS (env SR_TLS_DIR)")
	fs.StringVar(&o.TLSCert, "tls-cert", "", "client certificate name in --tls-dir (default operator; viewer for read-only)")
	if command {
		fs.StringVar(&o.CommandID, "command-id", "", "idempotency key: a command sent again with it is applied once")
	} else {
		fs.Uint64Var(&o.AfterSeq, "after-seq", 0, "answer once the read model has applied this log sequence (a command's seq)")
	}
}

// opConnect dials the control plane's NATS server.
func opConnect(o opOptions) (*nats.Conn, error) {
	if o.TLSCert != "" && o.TLSDir == "" {
		return nil, usagef("%v", errNoTLSDir)
	}
	cert := o.TLSCert
	if cert == "" {
		cert = pki.DefaultOperatorCert
	}
	tlsOpts, err := pki.NATSOptions(o.TLSDir, cert)
	if err != nil {
		return nil, usagef("%v", err)
	}
	if len(tlsOpts) > 0 {
		tlsOpts = append(tlsOpts, nats.ErrorHandler(closeOnPermissionViolation))
	}
	nc, err := nats.Connect(o.NATSURL, append([]nats.Option{nats.Name("siterecovery-cli"), nats.Timeout(o.Timeout)}, tlsOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("cannot connect to %s: %w", o.NATSURL, err)
	}
	return nc, nil
}

// printJSON writes raw indented.
func printJSON(w io.Writer, raw []byte) error {
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		return fmt.Errorf("reply is not JSON: %w", err)
	}
	b.WriteByte('\n')
	_, err := w.Write(b.Bytes())
	return err
}

// splitList splits comma-separated values of a repeatable flag.
func splitList(vals []string) []string {
	var out []string
	for _, v := range vals {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }
