package pki

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nats-io/nats.go"
)

// The certificate directory `siterecovery auth init` writes and `serve`,
// `agent` and the operator commands read with --tls-dir (docs/security.md).
// Every certificate is signed by ca.pem; a client certificate's subject is
// CN=<name>,OU=<role>,O=siterecovery and the server maps it to the NATS
// user of that role.

// Roles of the client certificates (their OU).
const (
	RoleHost     = "host"
	RoleOperator = "operator"
	RoleViewer   = "viewer"
	RoleControl  = "control"
)

// certOrg is the organization of every certificate auth init writes.
const certOrg = "siterecovery"

// Files of the certificate directory.
const (
	CAFile      = "ca.pem"
	caKeyFile   = "ca-key.pem"
	serverName  = "server" // server.pem, server-key.pem
	certSuffix  = ".pem"
	keySuffix   = "-key.pem"
	TokenSuffix = ".token"
)

const (
	// EnvTLSDir is the default of every --tls-dir.
	EnvTLSDir = "SR_TLS_DIR"
	// DefaultOperatorCert is the certificate the operator commands present.
	DefaultOperatorCert = RoleOperator
	// inboxPrefix starts every TLS client's own inbox prefix.
	inboxPrefix = "_INBOX_"
	tlsMinVer   = tls.VersionTLS12
)

// CertPaths returns the certificate and key files of name in dir.
func CertPaths(dir, name string) (cert, key string) {
	return filepath.Join(dir, name+certSuffix), filepath.Join(dir, name+keySuffix)
}

// subjectDN is the distinguished name of a client certificate, as the NATS
// server maps it to a user.
func subjectDN(role, name string) string {
	return "CN=" + name + ",OU=" + role + ",O=" + certOrg
}

// LoadCAPool reads ca.pem of dir.
func LoadCAPool(dir string) (*x509.CertPool, error) {
	raw, err := os.ReadFile(filepath.Join(dir, CAFile))
	if err != nil {
		return nil, fmt.Errorf("--tls-dir: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(raw) {
		return nil, fmt.Errorf("--tls-dir: %s holds no PEM certificate", filepath.Join(dir, CAFile))
	}
	return pool, nil
}

// clientTLS is the TLS configuration of a NATS client presenting the
// certificate name of dir (a host name, operator, viewer or control).
func clientTLS(dir, name string) (*tls.Config, error) {
	pool, err := LoadCAPool(dir)
	if err != nil {
		return nil, err
	}
	certFile, keyFile := CertPaths(dir, name)
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-dir: certificate %q: %w", name, err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tlsMinVer}, nil
}

// NATSOptions are the connection options of a client presenting the
// certificate name of dir: TLS, and replies on an inbox prefix of its own
// (the server lets each user subscribe only to its own inboxes). No
// options when dir is empty.
func NATSOptions(dir, name string) ([]nats.Option, error) {
	if dir == "" {
		return nil, nil
	}
	tc, err := clientTLS(dir, name)
	if err != nil {
		return nil, err
	}
	leaf := tc.Certificates[0].Leaf
	if leaf == nil || len(leaf.Subject.OrganizationalUnit) != 1 {
		return nil, fmt.Errorf("--tls-dir: certificate %q has no role (OU)", name)
	}
	inbox := UserInbox(leaf.Subject.OrganizationalUnit[0], leaf.Subject.CommonName)
	return []nats.Option{nats.Secure(tc), nats.CustomInboxPrefix(inbox)}, nil
}

// UserInbox is the inbox prefix of a certificate: _INBOX_<role>_<name>.
func UserInbox(role, name string) string { return inboxPrefix + role + "_" + name }

// ClientCert is a client certificate found in the certificate directory.
type ClientCert struct {
	Role, Name string
}

// ScanClientCerts lists the client certificates of dir signed by its CA,
// by role and name, sorted. A certificate that does not chain to ca.pem
// is an error: serve refuses a directory it cannot trust.
func ScanClientCerts(dir string) ([]ClientCert, error) {
	pool, err := LoadCAPool(dir)
	if err != nil {
		return nil, err
	}
	files, err := filepath.Glob(filepath.Join(dir, "*"+certSuffix))
	if err != nil {
		return nil, err
	}
	var out []ClientCert
	for _, f := range files {
		base := filepath.Base(f)
		if strings.HasSuffix(base, keySuffix) || base == CAFile || base == serverName+certSuffix {
			continue
		}
		c, err := readClientCert(f, pool)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b ClientCert) int { return strings.Compare(a.Role+"/"+a.Name, b.Role+"/"+b.Name) })
	return out, nil
}

func readClientCert(path string, pool *x509.CertPool) (ClientCert, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return ClientCert{}, err
	}
	blk, _ := pem.Decode(raw)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return ClientCert{}, fmt.Errorf("--tls-dir: %s is not a PEM certificate", path)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return ClientCert{}, fmt.Errorf("--tls-dir: %s: %w", path, err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return ClientCert{}, fmt.Errorf("--tls-dir: %s is not a client certificate of %s: %w", path, CAFile, err)
	}
	s := cert.Subject
	if len(s.OrganizationalUnit) != 1 || len(s.Organization) != 1 || s.Organization[0] != certOrg || s.CommonName == "" {
		return ClientCert{}, fmt.Errorf("--tls-dir: %s: subject %q is not CN=<name>,OU=<role>,O=%s", path, s, certOrg)
	}
	c := ClientCert{Role: s.OrganizationalUnit[0], Name: s.CommonName}
	if !slices.Contains([]string{RoleHost, RoleOperator, RoleViewer, RoleControl}, c.Role) {
		return ClientCert{}, fmt.Errorf("--tls-dir: %s: unknown role %q", path, c.Role)
	}
	return c, nil
}

// ServerTLS is the TLS configuration of the HTTPS endpoint: server.pem.
func ServerTLS(dir string) (*tls.Config, error) {
	certFile, keyFile := CertPaths(dir, serverName)
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-dir: server certificate: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tlsMinVer}, nil
}
