package main

import (
	"errors"
	"os"

	"github.com/nats-io/nats.go"

	"github.com/siterecovery/siterecovery/cmd/siterecovery/pki"
	"github.com/siterecovery/siterecovery/handlers"
)

// tlsDirFlagDefault is the default of --tls-dir: $SR_TLS_DIR.
func tlsDirFlagDefault() string { return os.Getenv(pki.EnvTLSDir) }

// errNoTLSDir is returned when a TLS-only option is given without --tls-dir.
var errNoTLSDir = errors.New("--tls-cert needs --tls-dir (or SR_TLS_DIR)")

// closeOnPermissionViolation ends an operator command's connection when
// the server refuses one of its publishes or subscriptions: the request
// waiting for a reply that cannot come returns at once, and
// permissionDenied tells why.
func closeOnPermissionViolation(nc *nats.Conn, _ *nats.Subscription, err error) {
	if errors.Is(err, nats.ErrPermissionViolation) {
		nc.Close()
	}
}

// permissionDenied is an "unauthorized" refusal when the request failed
// because the server refused it to this certificate, else nil.
func permissionDenied(nc *nats.Conn, err error) error {
	if err == nil {
		return nil
	}
	if last := nc.LastError(); errors.Is(last, nats.ErrPermissionViolation) {
		return &refusedError{Code: handlers.CodeUnauthorized, Message: last.Error() + " (this certificate's role may not do that)"}
	}
	return nil
}
