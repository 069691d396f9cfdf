package main

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

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
// because the server refused it to this certificate, else nil. Its
// message names the certificate's role and the roles the call needs.
func permissionDenied(nc *nats.Conn, err error) error {
	if err == nil {
		return nil
	}
	last := nc.LastError()
	if !errors.Is(last, nats.ErrPermissionViolation) {
		return nil
	}
	return &refusedError{Code: handlers.CodeUnauthorized, Message: deniedMessage(nc, last)}
}

// violation is the server's text for a refused call: nats.go hands it on
// as the error's message only.
var violation = regexp.MustCompile(`Permissions Violation for (Publish|Subscription) to "([^"]+)"`)

// deniedMessage says which certificate was refused what, and which role
// the call needs: `certificate "viewer" (role viewer) may not publish to
// sr.cmd.site.register: that needs the operator certificate (--tls-cert
// operator)`, then the server's own words.
func deniedMessage(nc *nats.Conn, err error) string {
	who := "this certificate"
	if role, name, ok := certIdentity(nc); ok {
		who = fmt.Sprintf("certificate %q (role %s)", name, role)
	}
	m := violation.FindStringSubmatch(err.Error())
	if m == nil {
		return fmt.Sprintf("%s was refused: %v", who, err)
	}
	publish, subject := m[1] == "Publish", m[2]
	verb := "subscribe to"
	if publish {
		verb = "publish to"
	}
	return fmt.Sprintf("%s may not %s %s: %s (%v)", who, verb, subject, neededRoles(pki.RolesAllowed(publish, subject)), err)
}

// neededRoles says what a certificate must be to make a call.
func neededRoles(roles []string) string {
	var opts []string
	for _, r := range roles {
		switch r {
		case pki.RoleOperator, pki.RoleViewer:
			opts = append(opts, fmt.Sprintf("the %s certificate (--tls-cert %s)", r, r))
		case pki.RoleHost:
			opts = append(opts, "the certificate of the host the subject names")
		}
	}
	if len(opts) == 0 {
		return "only the control plane may"
	}
	return "that needs " + strings.Join(opts, " or ")
}

// certIdentity is the role and name of the client certificate nc
// presents (its OU and CN).
func certIdentity(nc *nats.Conn) (role, name string, ok bool) {
	tc := nc.Opts.TLSConfig
	if tc == nil || len(tc.Certificates) == 0 || tc.Certificates[0].Leaf == nil {
		return "", "", false
	}
	s := tc.Certificates[0].Leaf.Subject
	if len(s.OrganizationalUnit) != 1 {
		return "", "", false
	}
	return s.OrganizationalUnit[0], s.CommonName, true
}
