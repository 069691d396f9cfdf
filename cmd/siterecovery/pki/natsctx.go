package pki

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
)

// The `nats` CLI contexts auth init writes next to the certificates, one
// per operator-side role (docs/security.md): what a plain NATS client
// needs to talk to a control plane under mTLS. Besides the URL, CA,
// certificate and key, it carries the inbox prefix the server lets that
// certificate subscribe to (UserInbox): without it the CLI's replies go
// to _INBOX.> and every request is refused.

// ContextRoles get a nats CLI context each.
var ContextRoles = []string{RoleOperator, RoleViewer}

// DefaultNATSPort is the port of the URL written in the contexts when
// InitConfig.NATSURL is empty (serve --listen's default port).
const DefaultNATSPort = 4222

// ContextFile is the name of role's nats CLI context in the certificate
// directory: nats-<role>.json. The CLI reads a context from a path only
// when it ends in .json (`nats --context DIR/nats-operator.json`).
func ContextFile(role string) string { return "nats-" + role + ".json" }

// ContextName is the name a user installs role's context under
// (~/.config/nats/context/<name>.json, then `nats context select <name>`).
func ContextName(role string) string { return certOrg + "-" + role }

// NATSContext is a nats CLI context (the fields of natscontext's JSON
// that auth init sets). Paths are absolute: the CLI resolves a relative
// one against its own working directory.
type NATSContext struct {
	Description string `json:"description"`
	URL         string `json:"url"`
	Cert        string `json:"cert"`
	Key         string `json:"key"`
	CA          string `json:"ca"`
	InboxPrefix string `json:"inbox_prefix"`
}

// DefaultNATSURL is the URL the contexts name when --nats-url is not
// given: the first --server-names entry, else 127.0.0.1, on port 4222.
func DefaultNATSURL(serverNames []string) string {
	host := "127.0.0.1"
	if len(serverNames) > 0 {
		host = serverNames[0]
	}
	return "nats://" + net.JoinHostPort(host, strconv.Itoa(DefaultNATSPort))
}

// validateNATSURL accepts nats:// and tls:// URLs with a host.
func validateNATSURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "nats" && u.Scheme != "tls") || u.Host == "" || u.User != nil {
		return fmt.Errorf("--nats-url %q: want nats://HOST:PORT or tls://HOST:PORT", raw)
	}
	return nil
}

// contextFiles are the nats CLI contexts of the directory dir, naming
// the server at natsURL.
func contextFiles(dir, natsURL string) ([]authFile, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	var files []authFile
	for _, role := range ContextRoles {
		cert, key := CertPaths(abs, role)
		c := NATSContext{
			Description: certOrg + " " + role + " (mTLS, " + abs + ")",
			URL:         natsURL,
			Cert:        cert,
			Key:         key,
			CA:          filepath.Join(abs, CAFile),
			InboxPrefix: UserInbox(role, role),
		}
		raw, err := json.MarshalIndent(c, "", "  ")
		if err != nil {
			return nil, err
		}
		files = append(files, authFile{ContextFile(role), append(raw, '\n'), 0o644})
	}
	return files, nil
}
