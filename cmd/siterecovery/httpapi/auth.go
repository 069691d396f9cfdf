package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/rs/zerolog"

	"github.com/siterecovery/siterecovery/cmd/siterecovery/pki"
	"github.com/siterecovery/siterecovery/handlers"
)

// HTTP with --tls-dir: HTTPS with server.pem, and a bearer token of a role
// on the API and the metrics (operator.token commands and queries,
// viewer.token only reads). The console's page is public; its calls carry
// the token in a cookie set by /login (EventSource cannot send headers).

// TokenCookie is the cookie /login sets to the token.
const TokenCookie = "sr_token"

// Listen listens on addr, with TLS when tlsDir is set.
func Listen(addr, tlsDir string) (net.Listener, error) {
	var tc *tls.Config
	if tlsDir != "" {
		var err error
		if tc, err = pki.ServerTLS(tlsDir); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--http %s: %w", addr, err)
	}
	if tc != nil {
		ln = tls.NewListener(ln, tc)
	}
	return ln, nil
}

// bearerAuth checks the token of each request against the roles' tokens.
// Safe for concurrent use (read-only after construction).
type bearerAuth struct {
	next   http.Handler
	tokens map[string][32]byte // role → SHA-256 of its token
	logger zerolog.Logger
}

// WithBearerAuth wraps next with the token check of tlsDir's tokens; next
// itself when tlsDir is empty (plain HTTP, no tokens).
func WithBearerAuth(next http.Handler, tlsDir string, logger zerolog.Logger) (http.Handler, error) {
	if tlsDir == "" {
		return next, nil
	}
	a := &bearerAuth{next: next, tokens: map[string][32]byte{}, logger: logger}
	for _, role := range pki.HTTPRoles {
		tok, err := readToken(filepath.Join(tlsDir, role+pki.TokenSuffix))
		if err != nil {
			return nil, err
		}
		a.tokens[role] = sha256.Sum256([]byte(tok))
	}
	return a, nil
}

func readToken(path string) (string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--tls-dir: HTTP token: %w", err)
	}
	tok := strings.TrimSpace(string(raw))
	if len(tok) < 32 {
		return "", fmt.Errorf("--tls-dir: HTTP token %s is shorter than 32 characters", path)
	}
	return tok, nil
}

func (a *bearerAuth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/login" {
		a.login(w, r)
		return
	}
	if !strings.HasPrefix(r.URL.Path, "/api/") && r.URL.Path != "/metrics" {
		a.next.ServeHTTP(w, r) // the console's files and /healthz
		return
	}
	role := a.role(requestToken(r))
	switch {
	case role == "":
		w.Header().Set("WWW-Authenticate", `Bearer realm="siterecovery"`)
		a.refuse(w, r, http.StatusUnauthorized, "a valid bearer token is required: Authorization: Bearer TOKEN, with the contents of operator.token or viewer.token")
	case role == pki.RoleViewer && r.Method != http.MethodGet && r.Method != http.MethodHead:
		a.refuse(w, r, http.StatusForbidden, "the viewer token may only query; commands need the operator token")
	default:
		a.next.ServeHTTP(w, r)
	}
}

func (a *bearerAuth) refuse(w http.ResponseWriter, r *http.Request, status int, msg string) {
	a.logger.Debug().Str(logHTTPPath, r.URL.Path).Int(logHTTPStatus, status).Msg(msg)
	writeError(w, &apiError{Status: status, Code: handlers.CodeUnauthorized, Message: msg})
}

// role is the role whose token tok is, "" for none.
func (a *bearerAuth) role(tok string) string {
	if tok == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(tok))
	found := ""
	for role, want := range a.tokens {
		if subtle.ConstantTimeCompare(sum[:], want[:]) == 1 {
			found = role
		}
	}
	return found
}

// requestToken is the bearer token of r, or its token cookie.
func requestToken(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return ""
		}
		return strings.TrimSpace(tok)
	}
	if c, err := r.Cookie(TokenCookie); err == nil {
		return c.Value
	}
	return ""
}

// login serves a form for the token (GET) and sets the cookie (POST).
func (a *bearerAuth) login(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprint(w, loginPage)
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, 4096)
		tok := strings.TrimSpace(r.PostFormValue("token"))
		if a.role(tok) == "" {
			a.refuse(w, r, http.StatusUnauthorized, "wrong token")
			return
		}
		http.SetCookie(w, &http.Cookie{Name: TokenCookie, Value: tok, Path: "/", HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
		http.Redirect(w, r, "/", http.StatusSeeOther)
	default:
		w.Header().Set("Allow", "GET, POST")
		writeError(w, &apiError{Status: http.StatusMethodNotAllowed, Code: codeMethodNotAllowed, Message: "GET or POST /login"})
	}
}

const loginPage = `<!doctype html>
<html><head><meta charset="utf-8"><title>siterecovery: sign in</title></head>
<body><form method="post" action="/login">
<p><label>Token (operator.token or viewer.token): <input name="token" type="password" autofocus></label></p>
<p><button type="submit">Sign in</button></p>
</form></body></html>
`
