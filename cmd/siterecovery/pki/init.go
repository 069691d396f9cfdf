package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/siterecovery/siterecovery/events"
)

// `siterecovery auth init --dir DIR --hosts h1,h2`: a CA, the server's
// certificate, one client certificate per host and per role, one HTTP
// bearer token per role and a nats CLI context per operator-side role.
// ECDSA P-256; keys and tokens 0600.

// InitConfig is the configuration of `auth init`.
type InitConfig struct {
	Dir         string
	Hosts       []string
	ServerNames []string
	Days        int
	Force       bool
	// NATSURL is the server the nats CLI contexts name (default
	// DefaultNATSURL(ServerNames)).
	NATSURL string
}

// reservedCertNames cannot be host names: they are the other files.
var reservedCertNames = []string{"ca", "server", RoleOperator, RoleViewer, RoleControl}

// HTTPRoles get a bearer token file each.
var HTTPRoles = []string{RoleOperator, RoleViewer}

func (c InitConfig) Validate() error {
	if c.Dir == "" {
		return errors.New("--dir is required")
	}
	if len(c.Hosts) == 0 {
		return errors.New("--hosts is required")
	}
	if c.Days < 1 || c.Days > 3650 {
		return fmt.Errorf("--days %d: want 1 to 3650", c.Days)
	}
	if c.NATSURL != "" {
		if err := validateNATSURL(c.NATSURL); err != nil {
			return err
		}
	}
	for i, h := range c.Hosts {
		if err := events.ValidateToken("--hosts", h); err != nil {
			return err
		}
		if slices.Contains(reservedCertNames, h) || slices.Contains(c.Hosts[:i], h) {
			return fmt.Errorf("--hosts: %q is reserved or repeated", h)
		}
	}
	return nil
}

// authFile is one file auth init writes.
type authFile struct {
	name string
	data []byte
	mode os.FileMode
}

// WriteDir makes every key and certificate, then writes them: nothing
// is written when a file exists (without Force) or a key cannot be made.
func WriteDir(cfg InitConfig, now time.Time) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	files, err := authFiles(cfg, now)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return err
	}
	if !cfg.Force {
		for _, f := range files {
			if _, err := os.Lstat(filepath.Join(cfg.Dir, f.name)); err == nil {
				return fmt.Errorf("%s %w", filepath.Join(cfg.Dir, f.name), ErrExists)
			}
		}
	}
	for _, f := range files {
		if err := writeFileAtomic(filepath.Join(cfg.Dir, f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	return syncDir(cfg.Dir)
}

// authFiles makes the contents of every file of the directory.
func authFiles(cfg InitConfig, now time.Time) ([]authFile, error) {
	notAfter := now.Add(time.Duration(cfg.Days) * 24 * time.Hour)
	ca, caKey, files, err := newCA(now, notAfter)
	if err != nil {
		return nil, err
	}
	issue := func(name string, tmpl *x509.Certificate) error {
		fs, err := issueCert(name, tmpl, ca, caKey, now, notAfter)
		files = append(files, fs...)
		return err
	}
	if err := issue(serverName, serverTemplate(cfg.ServerNames)); err != nil {
		return nil, err
	}
	for _, h := range cfg.Hosts {
		if err := issue(h, clientTemplate(RoleHost, h)); err != nil {
			return nil, err
		}
	}
	for _, r := range []string{RoleOperator, RoleViewer, RoleControl} {
		if err := issue(r, clientTemplate(r, r)); err != nil {
			return nil, err
		}
	}
	for _, r := range HTTPRoles {
		tok := make([]byte, 32)
		if _, err := rand.Read(tok); err != nil {
			return nil, err
		}
		files = append(files, authFile{r + TokenSuffix, []byte(hex.EncodeToString(tok) + "\n"), 0o600})
	}
	ctxs, err := contextFiles(cfg.Dir, cfg.ContextURL())
	return append(files, ctxs...), err
}

// ContextURL is the server URL of the nats CLI contexts.
func (c InitConfig) ContextURL() string {
	if c.NATSURL != "" {
		return c.NATSURL
	}
	return DefaultNATSURL(c.ServerNames)
}

func newCA(notBefore, notAfter time.Time) (*x509.Certificate, *ecdsa.PrivateKey, []authFile, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "siterecovery CA", Organization: []string{certOrg}},
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := signCert(tmpl, tmpl, &key.PublicKey, key, notBefore, notAfter)
	if err != nil {
		return nil, nil, nil, err
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, err
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, nil, nil, err
	}
	return ca, key, []authFile{{CAFile, encodeCert(der), 0o644}, {caKeyFile, keyPEM, 0o600}}, nil
}

func serverTemplate(extra []string) *x509.Certificate {
	t := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "siterecovery server", Organization: []string{certOrg}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	for _, n := range extra {
		if ip := net.ParseIP(n); ip != nil {
			t.IPAddresses = append(t.IPAddresses, ip)
		} else {
			t.DNSNames = append(t.DNSNames, n)
		}
	}
	return t
}

// clientTemplate is a client certificate of role: no SAN, the NATS server
// maps its subject (CN=name,OU=role,O=siterecovery) to the user.
func clientTemplate(role, name string) *x509.Certificate {
	return &x509.Certificate{
		Subject:     pkix.Name{CommonName: name, OrganizationalUnit: []string{role}, Organization: []string{certOrg}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
}

func issueCert(name string, tmpl, ca *x509.Certificate, caKey *ecdsa.PrivateKey, notBefore, notAfter time.Time) ([]authFile, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := signCert(tmpl, ca, &key.PublicKey, caKey, notBefore, notAfter)
	if err != nil {
		return nil, fmt.Errorf("certificate %s: %w", name, err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	return []authFile{{name + certSuffix, encodeCert(der), 0o644}, {name + keySuffix, keyPEM, 0o600}}, nil
}

func signCert(tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, signer *ecdsa.PrivateKey, notBefore, notAfter time.Time) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore, tmpl.NotAfter = notBefore.Add(-5*time.Minute), notAfter
	return x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

// writeFileAtomic writes data to a temp file with mode, syncs it and
// renames it to path.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename: nothing to remove
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
