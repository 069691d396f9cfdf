package jetstream

import (
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// AuthConfig makes an embedded server require mutual TLS and map each
// client certificate to a user with its own permissions (nats-server's
// verify_and_map): a client without a certificate signed by the CA, or
// whose certificate subject names no user, is refused at connect.
type AuthConfig struct {
	// CAFile verifies the client certificates (PEM).
	CAFile string
	// CertFile and KeyFile are the server's own certificate and key (PEM).
	CertFile string
	KeyFile  string
	// Users are the certificates the server accepts, with their rights.
	Users []TLSUser
}

// TLSUser is a user a client certificate maps to.
type TLSUser struct {
	// Subject is the certificate subject as an RFC 4514 distinguished
	// name, e.g. "CN=hv01,OU=host,O=siterecovery" (the order of the RDNs
	// does not matter). The certificate must carry no e-mail, DNS or URI
	// SAN that names another user: those are matched first.
	Subject string
	// Publish and Subscribe are the subjects the user may publish to and
	// subscribe to; nil rules allow everything.
	Publish   *SubjectRules
	Subscribe *SubjectRules
	// Responses lets the user answer the requests it receives (one reply
	// each, within ResponseExpiry) whatever its publish rules say
	// (nats-server's allow_responses).
	Responses bool
}

// ResponseExpiry bounds how long a TLSUser with Responses may answer a
// request it received.
const ResponseExpiry = 2 * time.Minute

// SubjectRules allows the subjects of Allow except those of Deny (NATS
// wildcards; a deny wins over an allow). An empty Allow allows every
// subject not denied.
type SubjectRules struct {
	Allow []string
	Deny  []string
}

// apply sets the TLS and user options of opts; a nil config changes
// nothing.
func (a *AuthConfig) apply(opts *server.Options) error {
	if a == nil {
		return nil
	}
	if a.CAFile == "" || a.CertFile == "" || a.KeyFile == "" {
		return fmt.Errorf("nats server: %w: TLS needs a CA, a certificate and a key", ErrServerConfig)
	}
	if len(a.Users) == 0 {
		return fmt.Errorf("nats server: %w: TLS with certificate users needs at least one user", ErrServerConfig)
	}
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{
		CertFile: a.CertFile, KeyFile: a.KeyFile, CaFile: a.CAFile, Verify: true,
	})
	if err != nil {
		return fmt.Errorf("nats server: TLS: %v: %w", err, ErrServerConfig)
	}
	opts.TLSConfig, opts.TLSVerify, opts.TLSMap = tc, true, true
	opts.TLSTimeout = 2
	opts.Users = nil
	seen := map[string]bool{}
	for _, u := range a.Users {
		if u.Subject == "" || seen[u.Subject] {
			return fmt.Errorf("nats server: %w: TLS user subject %q empty or repeated", ErrServerConfig, u.Subject)
		}
		seen[u.Subject] = true
		opts.Users = append(opts.Users, &server.User{Username: u.Subject, Permissions: u.permissions()})
	}
	return nil
}

func (u TLSUser) permissions() *server.Permissions {
	if u.Publish == nil && u.Subscribe == nil && !u.Responses {
		return nil
	}
	p := &server.Permissions{Publish: u.Publish.serverRules(), Subscribe: u.Subscribe.serverRules()}
	if u.Responses {
		p.Response = &server.ResponsePermission{MaxMsgs: 1, Expires: ResponseExpiry}
	}
	return p
}

func (r *SubjectRules) serverRules() *server.SubjectPermission {
	if r == nil {
		return nil
	}
	return &server.SubjectPermission{Allow: r.Allow, Deny: r.Deny}
}
